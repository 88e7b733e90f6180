package deploy

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"net"

	"go.yaml.in/yaml/v3"
)

// K8sOptions shape the Kubernetes output.
type K8sOptions struct {
	Namespace string
	// CertManager adds a cert-manager Issuer of type CA backed by the
	// development CA, and a Certificate for the SuperLink, so cert-manager
	// issues and renews superlink-tls instead of the files' certificate.
	CertManager bool
	// Prefix names the objects (default "flower").
	Prefix string
}

// The names of the objects, for the values files that refer to them.
const (
	SuperLinkTLSSecret = "superlink-tls"
	CAIssuer           = "dev-ca"
)

type meta struct {
	Name      string            `yaml:"name"`
	Namespace string            `yaml:"namespace"`
	Labels    map[string]string `yaml:"labels,omitempty"`
}

type secret struct {
	APIVersion string            `yaml:"apiVersion"`
	Kind       string            `yaml:"kind"`
	Metadata   meta              `yaml:"metadata"`
	Type       string            `yaml:"type"`
	Data       map[string]string `yaml:"data"`
}

// K8sFile is one file of the output: YAML for kubectl apply, or a Helm
// values file; Secret says it holds private keys (write it 0600).
type K8sFile struct {
	Name   string
	Data   []byte
	Secret bool
}

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

// Kubernetes returns the manifests and values files of the federation: the
// SuperLink's TLS Secret (kubernetes.io/tls: tls.crt, tls.key, ca.crt, as
// Flower's SuperLink chart mounts it), a Secret per SuperNode with its
// OpenSSH key and the CA, and per SuperNode a values file for Flower's
// SuperNode chart with the key inline (global.nodeAuth.
// authSupernodePrivateKey).
func (f *Federation) Kubernetes(o K8sOptions) ([]K8sFile, error) {
	if o.Prefix == "" {
		o.Prefix = "flower"
	}
	labels := map[string]string{"app.kubernetes.io/part-of": o.Prefix, "app.kubernetes.io/managed-by": "nodekeys"}
	name := func(s string) string { return o.Prefix + "-" + s }
	var docs []any
	if o.CertManager {
		docs = append(docs,
			secret{"v1", "Secret", meta{name(CAIssuer), o.Namespace, labels}, "kubernetes.io/tls",
				map[string]string{"tls.crt": b64(f.CACert), "tls.key": b64(f.CAKey), "ca.crt": b64(f.CACert)}},
			map[string]any{"apiVersion": "cert-manager.io/v1", "kind": "Issuer",
				"metadata": meta{name(CAIssuer), o.Namespace, labels},
				"spec":     map[string]any{"ca": map[string]any{"secretName": name(CAIssuer)}}},
			f.certificate(name, o.Namespace, labels))
	} else {
		docs = append(docs, secret{"v1", "Secret", meta{name(SuperLinkTLSSecret), o.Namespace, labels}, "kubernetes.io/tls",
			map[string]string{"tls.crt": b64(f.ServerCert), "tls.key": b64(f.ServerKey), "ca.crt": b64(f.CACert)}})
	}
	for _, n := range f.Nodes {
		docs = append(docs, secret{"v1", "Secret", meta{name(dnsLabel(n.Name)), o.Namespace, labels}, "Opaque",
			map[string]string{"ca.crt": b64(f.CACert), "supernode.key": b64(n.PrivateKey)}})
	}
	var manifest bytes.Buffer
	for i, d := range docs {
		if i > 0 {
			manifest.WriteString("---\n")
		}
		b, err := yaml.Marshal(d)
		if err != nil {
			return nil, err
		}
		manifest.Write(b)
	}
	out := []K8sFile{{Name: "secrets.yaml", Data: manifest.Bytes(), Secret: true}}
	for _, n := range f.Nodes {
		v := map[string]any{"global": map[string]any{"nodeAuth": map[string]any{
			"enabled": true, "authSupernodePrivateKey": string(n.PrivateKey)}}}
		b, err := yaml.Marshal(v)
		if err != nil {
			return nil, err
		}
		head := fmt.Sprintf("# Values for Flower's SuperNode chart: %s (%s).\n# The CA is in the Secret %s, key ca.crt.\n", n.Name, n.Fingerprint, name(dnsLabel(n.Name)))
		out = append(out, K8sFile{Name: "values-" + dnsLabel(n.Name) + ".yaml", Data: append([]byte(head), b...), Secret: true})
	}
	return out, nil
}

// certificate is the cert-manager Certificate for the SuperLink, with the
// SANs of the current server certificate.
func (f *Federation) certificate(name func(string) string, ns string, labels map[string]string) map[string]any {
	var dns, ips []string
	for _, h := range f.Hosts {
		if net.ParseIP(h) != nil {
			ips = append(ips, h)
		} else {
			dns = append(dns, h)
		}
	}
	spec := map[string]any{
		"secretName":  name(SuperLinkTLSSecret),
		"issuerRef":   map[string]any{"name": name(CAIssuer), "kind": "Issuer"},
		"duration":    "8760h", // 365 days, as certgen
		"renewBefore": "720h",  // 30 days, when inspect starts to warn
		"privateKey":  map[string]any{"algorithm": "ECDSA", "size": 384, "rotationPolicy": "Always"},
		"usages":      []string{"server auth", "digital signature"},
	}
	if len(dns) > 0 {
		spec["dnsNames"] = dns
	}
	if len(ips) > 0 {
		spec["ipAddresses"] = ips
	}
	return map[string]any{"apiVersion": "cert-manager.io/v1", "kind": "Certificate",
		"metadata": meta{name(SuperLinkTLSSecret), ns, labels}, "spec": spec}
}
