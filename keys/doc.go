// Package keys makes, encodes and parses the ECDSA key pairs that Flower
// SuperNodes authenticate with.
//
// A SuperNode key pair is an ECDSA P-384 key in two files, exactly as
// `ssh-keygen -t ecdsa -b 384 -N "" -C ""` writes them: the private key in
// OpenSSH format ("-----BEGIN OPENSSH PRIVATE KEY-----", unencrypted, base64
// in 70-character lines) and the public key as one authorized_keys line,
// "ecdsa-sha2-nistp384 <base64> \n" (the empty comment leaves the space).
//
// Parsing accepts what Flower accepts: public keys on the NIST curves P-256,
// P-384 and P-521, private keys in OpenSSH, PKCS #8 or SEC 1 PEM form.
package keys
