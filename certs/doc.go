// Package certs makes the development TLS certificates of a Flower
// SuperLink: a CA that SuperNodes trust (ca.crt) and a server certificate
// it issues (server.pem), with their keys, as Flower's generate_cert.sh
// does, but with the extensions a certificate linter expects.
//
// The CA has basicConstraints CA:TRUE with path length 0 and keyUsage
// certSign and cRLSign, both critical. The server certificate has keyUsage
// digitalSignature (and keyEncipherment for RSA), extKeyUsage serverAuth,
// subject and authority key identifiers, a random 128-bit serial and at
// most 397 days of validity. Renewing the server certificate reuses the CA,
// so SuperNodes that trust ca.crt keep working.
package certs
