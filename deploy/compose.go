package deploy

import (
	"fmt"

	"go.yaml.in/yaml/v3"

	"github.com/nodekeys/nodekeys/certs"
)

// FlowerUID is the user Flower's container images run as.
const FlowerUID = 49999

// ComposeFile is one file of the Compose output, under its folder.
type ComposeFile struct {
	// Name is the path inside the output folder.
	Name string
	Data []byte
	// Private files are given to FlowerUID with mode 0400 (or, where the
	// owner cannot be changed, kept 0600 and named in a hint): readable by
	// the container's user, never by everyone.
	Private bool
}

// Compose returns the secrets folder and the secrets.yaml block for
// Flower's Docker Compose files: the SuperLink gets /app/certificates/
// {ca.crt,server.pem,server.key}, each SuperNode the CA and its key.
func (f *Federation) Compose() ([]ComposeFile, error) {
	files := []ComposeFile{
		{Name: "secrets/" + certs.CACertFile, Data: f.CACert},
		{Name: "secrets/" + certs.ServerCertFile, Data: f.ServerCert},
		{Name: "secrets/" + certs.ServerKeyFile, Data: f.ServerKey, Private: true},
	}
	secrets := map[string]any{
		"superlink-ca-crt":     map[string]string{"file": "./secrets/" + certs.CACertFile},
		"superlink-server-pem": map[string]string{"file": "./secrets/" + certs.ServerCertFile},
		"superlink-server-key": map[string]string{"file": "./secrets/" + certs.ServerKeyFile},
	}
	target := func(src, dst string) map[string]any {
		return map[string]any{"source": src, "target": dst, "uid": fmt.Sprint(FlowerUID), "mode": 0o400}
	}
	services := map[string]any{
		"superlink": map[string]any{"secrets": []any{
			target("superlink-ca-crt", "/app/certificates/ca.crt"),
			target("superlink-server-pem", "/app/certificates/server.pem"),
			target("superlink-server-key", "/app/certificates/server.key"),
		}},
	}
	for _, n := range f.Nodes {
		key := dnsLabel(n.Name) + "-key"
		files = append(files, ComposeFile{Name: "secrets/" + n.Name, Data: n.PrivateKey, Private: true})
		secrets[key] = map[string]string{"file": "./secrets/" + n.Name}
		services[fmt.Sprintf("supernode-%d", n.Index)] = map[string]any{"secrets": []any{
			target("superlink-ca-crt", "/app/certificates/ca.crt"),
			target(key, "/app/keys/"+n.Name),
		}}
	}
	b, err := yaml.Marshal(map[string]any{"secrets": secrets, "services": services})
	if err != nil {
		return nil, err
	}
	head := "# Merge into Flower's compose file (docker compose -f compose.yml -f secrets.yaml).\n" +
		"# SuperNodes: flower-supernode --root-certificates /app/certificates/ca.crt \\\n" +
		"#   --auth-supernode-private-key /app/keys/<its key>\n"
	files = append(files, ComposeFile{Name: "secrets.yaml", Data: append([]byte(head), b...)})
	return files, nil
}
