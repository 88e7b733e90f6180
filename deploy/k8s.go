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
	// issues and renews the SuperLink's TLS Secret instead of the files'
	// certificate.
	CertManager bool
	// Prefix names the objects (default "flower").
	Prefix string
	// FlowerVersion picks node authentication (default
	// DefaultFlowerVersion): the allowlist in the SuperLink's values
	// before 1.23, registration from 1.23.
	FlowerVersion string
}

// The names of the objects, after the prefix ("flower-superlink-tls").
const (
	// SuperLinkTLSSecret is the SuperLink's kubernetes.io/tls Secret
	// (tls.crt, tls.key, ca.crt), written or issued by cert-manager.
	SuperLinkTLSSecret = "superlink-tls"
	// SuperLinkCASecret holds only the CA (ca.crt, and tls.crt the same;
	// tls.key empty), for the SuperNode chart's
	// supernode.superlink.certificate.existingSecret.
	SuperLinkCASecret = "superlink-ca"
	// CAIssuer is the cert-manager Issuer and the Secret of its CA.
	CAIssuer = "dev-ca"
)

// Folders of the output: kubectl apply -f on the output folder reads
// only the manifests; the Helm values are in ValuesDir beneath it.
const ValuesDir = "values"

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

// K8sFile is one file of the output: a manifest for kubectl apply, or a
// Helm values file under ValuesDir; Secret says it holds private keys
// (write it 0600).
type K8sFile struct {
	Name   string
	Data   []byte
	Secret bool
}

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

// K8sObject names an object of the output.
type K8sObject struct{ Kind, Name string }

// Kubernetes returns the manifests and values files of the federation for
// Flower's Helm charts:
//
//   - superlink.yaml: the SuperLink's kubernetes.io/tls Secret (tls.crt,
//     tls.key, ca.crt, mounted by the chart at /app/cert/), or with
//     CertManager an Issuer backed by the CA and a Certificate that
//     writes it;
//   - supernodes.yaml: the CA alone, for SuperNodes;
//   - values/superlink.yaml: tls.existingSecret with the chart's own
//     issuer and certificate off, and node authentication;
//   - values/NAME.yaml per SuperNode: the CA Secret and node
//     authentication. The private key is in no file of the output: helm
//     reads it from the key folder (--set-file
//     global.nodeAuth.authSupernodePrivateKey=KEYFILE), so the cluster
//     holds one copy, the chart's.
func (f *Federation) Kubernetes(o K8sOptions) ([]K8sFile, error) {
	if o.Prefix == "" {
		o.Prefix = "flower"
	}
	if o.FlowerVersion == "" {
		o.FlowerVersion = DefaultFlowerVersion
	}
	registration, err := Registration(o.FlowerVersion)
	if err != nil {
		return nil, err
	}
	labels := map[string]string{"app.kubernetes.io/part-of": o.Prefix, "app.kubernetes.io/managed-by": "nodekeys"}
	name := func(s string) string { return o.Prefix + "-" + s }
	var link []any
	if o.CertManager {
		link = append(link,
			secret{"v1", "Secret", meta{name(CAIssuer), o.Namespace, labels}, "kubernetes.io/tls",
				map[string]string{"tls.crt": b64(f.CACert), "tls.key": b64(f.CAKey), "ca.crt": b64(f.CACert)}},
			map[string]any{"apiVersion": "cert-manager.io/v1", "kind": "Issuer",
				"metadata": meta{name(CAIssuer), o.Namespace, labels},
				"spec":     map[string]any{"ca": map[string]any{"secretName": name(CAIssuer)}}},
			f.certificate(name, o.Namespace, labels))
	} else {
		link = append(link, secret{"v1", "Secret", meta{name(SuperLinkTLSSecret), o.Namespace, labels}, "kubernetes.io/tls",
			map[string]string{"tls.crt": b64(f.ServerCert), "tls.key": b64(f.ServerKey), "ca.crt": b64(f.CACert)}})
	}
	// A kubernetes.io/tls Secret must have tls.key; this one carries no
	// private key, only the CA the SuperNodes trust.
	nodes := []any{secret{"v1", "Secret", meta{name(SuperLinkCASecret), o.Namespace, labels}, "kubernetes.io/tls",
		map[string]string{"ca.crt": b64(f.CACert), "tls.crt": b64(f.CACert), "tls.key": ""}}}
	linkYAML, err := manifest(link)
	if err != nil {
		return nil, err
	}
	nodesYAML, err := manifest(nodes)
	if err != nil {
		return nil, err
	}
	out := []K8sFile{
		{Name: "superlink.yaml", Data: linkYAML, Secret: true},
		{Name: "supernodes.yaml", Data: nodesYAML},
	}

	var pubs []string
	for _, n := range f.Nodes {
		pubs = append(pubs, n.PublicKey)
	}
	nodeAuth := map[string]any{"enabled": true}
	head := fmt.Sprintf("# Values for Flower's SuperLink chart (Flower %s): TLS from the Secret %s,\n"+
		"# the chart's own issuer and certificate off (with them on, existingSecret is ignored).\n", o.FlowerVersion, name(SuperLinkTLSSecret))
	if registration {
		head += "# Node authentication: register these keys once the SuperLink is up:\n" +
			"#   nodekeys register --superlink HOST:9093 --root-certificates ca.crt --dir KEYS\n"
		for _, n := range f.Nodes {
			head += fmt.Sprintf("#   %s %s\n", n.Name, n.Fingerprint)
		}
	} else {
		nodeAuth["authListPublicKeys"] = pubs
	}
	b, err := yaml.Marshal(map[string]any{
		"tls": map[string]any{"enabled": true, "existingSecret": name(SuperLinkTLSSecret),
			"issuer": map[string]any{"enabled": false}, "certificate": map[string]any{"enabled": false}},
		"global": map[string]any{"nodeAuth": nodeAuth},
	})
	if err != nil {
		return nil, err
	}
	out = append(out, K8sFile{Name: ValuesDir + "/superlink.yaml", Data: append([]byte(head), b...)})

	address := f.publicName()
	for _, n := range f.Nodes {
		auth := map[string]any{"enabled": true}
		if !registration {
			auth["authSupernodePublicKey"] = n.PublicKey
		}
		link := map[string]any{"port": 9092, "certificate": map[string]any{"existingSecret": name(SuperLinkCASecret)}}
		if address != "" {
			link["address"] = address
		}
		b, err := yaml.Marshal(map[string]any{
			"supernode": map[string]any{"superlink": link},
			"global":    map[string]any{"nodeAuth": auth},
		})
		if err != nil {
			return nil, err
		}
		file := ValuesDir + "/" + dnsLabel(n.Name) + ".yaml"
		head := fmt.Sprintf("# Values for Flower's SuperNode chart: %s (%s), trusting the CA in the\n"+
			"# Secret %s. The private key stays in its file; give it to helm:\n"+
			"#   helm install %s CHART -f %s --set-file global.nodeAuth.authSupernodePrivateKey=KEYS/%s\n",
			n.Name, n.Fingerprint, name(SuperLinkCASecret), dnsLabel(n.Name), file, n.Name)
		if address == "" {
			head += "# The server certificate names no host to dial: set supernode.superlink.address.\n"
		}
		out = append(out, K8sFile{Name: file, Data: append([]byte(head), b...)})
	}
	return out, nil
}

// Objects returns the kinds and names of the objects Kubernetes(o)
// defines, for checking what the values files and documents refer to.
func Objects(o K8sOptions) []K8sObject {
	if o.Prefix == "" {
		o.Prefix = "flower"
	}
	name := func(s string) string { return o.Prefix + "-" + s }
	objs := []K8sObject{{"Secret", name(SuperLinkCASecret)}}
	if o.CertManager {
		return append(objs, K8sObject{"Secret", name(CAIssuer)}, K8sObject{"Issuer", name(CAIssuer)},
			K8sObject{"Certificate", name(SuperLinkTLSSecret)}, K8sObject{"Secret", name(SuperLinkTLSSecret)})
	}
	return append(objs, K8sObject{"Secret", name(SuperLinkTLSSecret)})
}

// publicName is the name SuperNodes outside the cluster dial: the first
// DNS name of the server certificate other than localhost and the Compose
// service name, or "" if it has none.
func (f *Federation) publicName() string {
	for _, h := range f.Hosts {
		if net.ParseIP(h) == nil && h != "localhost" && h != ComposeServiceHost {
			return h
		}
	}
	return ""
}

// manifest joins objects into one YAML stream.
func manifest(docs []any) ([]byte, error) {
	var buf bytes.Buffer
	for i, d := range docs {
		if i > 0 {
			buf.WriteString("---\n")
		}
		b, err := yaml.Marshal(d)
		if err != nil {
			return nil, err
		}
		buf.Write(b)
	}
	return buf.Bytes(), nil
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
