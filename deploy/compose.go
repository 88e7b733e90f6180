package deploy

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/nodekeys/nodekeys/certs"
)

// FlowerUID is the user Flower's container images run as.
const FlowerUID = 49999

// ComposeServiceHost is the name SuperNodes dial inside Flower's Compose
// files (superlink:9092): the server certificate must carry it.
const ComposeServiceHost = "superlink"

// ComposeFileName is the Compose file of the output, merged after Flower's
// compose.yml.
const ComposeFileName = "federation.yml"

// flowerComposeNodes is how many SuperNodes Flower's compose.yml defines.
const flowerComposeNodes = 2

// ComposeFile is one file of the Compose output, under its folder.
type ComposeFile struct {
	// Name is the path inside the output folder.
	Name string
	Data []byte
	// Private files hold a private key: written 0600 and made readable
	// by FlowerUID alone (Docker Compose ignores uid, gid and mode on
	// file secrets: the host file's own permissions apply).
	Private bool
}

// ComposeOptions shape the Compose output.
type ComposeOptions struct {
	// Dir is the absolute path of the output folder. The Compose file
	// names its secrets by absolute path: Compose resolves relative paths
	// against the folder of the first -f file, Flower's.
	Dir string
	// FlowerVersion picks node authentication: the CSV allowlist before
	// 1.23, registration from 1.23 (default DefaultFlowerVersion). It is
	// also the image tag of SuperNodes beyond Flower's two.
	FlowerVersion string
}

// ErrNoServiceHost is a server certificate without the name SuperNodes
// dial inside Compose.
var ErrNoServiceHost = errors.New("the server certificate does not name " + ComposeServiceHost + ", the SuperLink's name inside Flower's Compose files")

// Compose returns the files of a Compose output for Flower's
// framework/docker/complete/compose.yml: a secrets/ folder, and
// federation.yml, which turns on TLS with the federation's CA and node
// authentication for every SuperNode (one service per key pair, so beyond
// Flower's two, with a ClientApp executor each), when merged after
// Flower's file:
//
//	docker compose -f compose.yml -f DIR/federation.yml up
func (f *Federation) Compose(o ComposeOptions) ([]ComposeFile, error) {
	if !filepath.IsAbs(o.Dir) {
		return nil, fmt.Errorf("deploy: the Compose output folder must be an absolute path, got %q", o.Dir)
	}
	if !f.HasHost(ComposeServiceHost) {
		return nil, ErrNoServiceHost
	}
	if o.FlowerVersion == "" {
		o.FlowerVersion = DefaultFlowerVersion
	}
	registration, err := Registration(o.FlowerVersion)
	if err != nil {
		return nil, err
	}
	abs := func(name string) string { return filepath.Join(o.Dir, "secrets", name) }
	files := []ComposeFile{
		{Name: "secrets/" + certs.CACertFile, Data: f.CACert},
		{Name: "secrets/" + certs.ServerCertFile, Data: f.ServerCert},
		{Name: "secrets/" + certs.ServerKeyFile, Data: f.ServerKey, Private: true},
	}
	secrets := map[string]any{
		"nodekeys-ca-crt":     map[string]string{"file": abs(certs.CACertFile)},
		"nodekeys-server-pem": map[string]string{"file": abs(certs.ServerCertFile)},
		"nodekeys-server-key": map[string]string{"file": abs(certs.ServerKeyFile)},
	}
	mount := func(src, dst string) map[string]any { return map[string]any{"source": src, "target": dst} }
	const caTarget = "/app/certificates/ca.crt"
	superlinkCmd := []string{"--isolation", "process",
		"--ssl-ca-certfile=" + caTarget,
		"--ssl-certfile=/app/certificates/server.pem",
		"--ssl-keyfile=/app/certificates/server.key"}
	superlinkSecrets := []any{
		mount("nodekeys-ca-crt", caTarget),
		mount("nodekeys-server-pem", "/app/certificates/server.pem"),
		mount("nodekeys-server-key", "/app/certificates/server.key"),
	}
	if registration {
		superlinkCmd = append(superlinkCmd, "--enable-supernode-auth")
	} else {
		var csv []string
		for _, n := range f.Nodes {
			csv = append(csv, n.PublicKey)
		}
		files = append(files, ComposeFile{Name: "secrets/client_public_keys.csv", Data: []byte(strings.Join(csv, ",") + "\n")})
		secrets["nodekeys-public-keys-csv"] = map[string]string{"file": abs("client_public_keys.csv")}
		superlinkCmd = append(superlinkCmd, "--auth-list-public-keys=/app/keys/client_public_keys.csv")
		superlinkSecrets = append(superlinkSecrets, mount("nodekeys-public-keys-csv", "/app/keys/client_public_keys.csv"))
	}
	services := map[string]any{
		"superlink": map[string]any{"command": superlinkCmd, "secrets": superlinkSecrets},
	}
	image := "flwr/supernode:${FLWR_VERSION:-" + o.FlowerVersion + "}"
	for i, n := range f.Nodes {
		svc := fmt.Sprintf("supernode-%d", i+1)
		// Flower's file has supernode-2 listen on 9095, where its
		// superexec-clientapp-2 looks; each container has its own
		// network, so every other SuperNode takes the default, 9094.
		port := 9094
		if i+1 == 2 {
			port = 9095
		}
		key := dnsLabel(n.Name) + "-key"
		files = append(files, ComposeFile{Name: "secrets/" + n.Name, Data: n.PrivateKey, Private: true})
		secrets[key] = map[string]string{"file": abs(n.Name)}
		cmd := []string{"--superlink", ComposeServiceHost + ":9092",
			"--clientappio-api-address", fmt.Sprintf("0.0.0.0:%d", port),
			"--isolation", "process",
			"--node-config", fmt.Sprintf("partition-id=%d num-partitions=%d", i, len(f.Nodes)),
			"--root-certificates", caTarget,
			"--auth-supernode-private-key", "/app/keys/" + n.Name}
		nodeSecrets := []any{mount("nodekeys-ca-crt", caTarget), mount(key, "/app/keys/"+n.Name)}
		if !registration {
			// Flower before 1.23 needs the public key file too.
			pub := dnsLabel(n.Name) + "-pub"
			files = append(files, ComposeFile{Name: "secrets/" + n.Name + ".pub", Data: []byte(n.PublicKey + "\n")})
			secrets[pub] = map[string]string{"file": abs(n.Name + ".pub")}
			cmd = append(cmd, "--auth-supernode-public-key", "/app/keys/"+n.Name+".pub")
			nodeSecrets = append(nodeSecrets, mount(pub, "/app/keys/"+n.Name+".pub"))
		}
		s := map[string]any{"command": cmd, "secrets": nodeSecrets}
		if i >= flowerComposeNodes {
			s["image"] = image
			s["depends_on"] = []string{"superlink"}
			services[fmt.Sprintf("superexec-clientapp-%d", i+1)] = clientAppExecutor(svc, port, o.FlowerVersion)
		}
		if registration {
			// A SuperNode whose key is not registered yet exits; it
			// starts once `nodekeys register` has run.
			s["restart"] = "on-failure"
		}
		services[svc] = s
	}
	// Flower's own SuperNodes that have no key pair stay off: without a
	// key they cannot join a SuperLink with node authentication.
	for i := len(f.Nodes) + 1; i <= flowerComposeNodes; i++ {
		off := map[string]any{"profiles": []string{"nodekeys-unused"}}
		services[fmt.Sprintf("supernode-%d", i)] = off
		services[fmt.Sprintf("superexec-clientapp-%d", i)] = off
	}
	b, err := yaml.Marshal(map[string]any{"secrets": secrets, "services": services})
	if err != nil {
		return nil, err
	}
	head := "# Made by nodekeys export compose for Flower " + o.FlowerVersion + ". Merge it AFTER Flower's compose.yml, without\n" +
		"# with-tls.yml (this file replaces it, with the federation's CA):\n" +
		"#   docker compose -f compose.yml -f " + filepath.Join(o.Dir, ComposeFileName) + " up\n" +
		"# Secret files are named by absolute path: Compose resolves relative paths against\n" +
		"# the folder of the first -f file, Flower's. Move this folder and export again.\n"
	if registration {
		head += "# Node authentication: the SuperLink admits registered keys only (--enable-supernode-auth).\n" +
			"# Start the SuperLink, register the keys through its Control API (port 9093), then the rest.\n"
	} else {
		head += "# Node authentication: the SuperLink admits the keys of secrets/client_public_keys.csv.\n"
	}
	files = append(files, ComposeFile{Name: ComposeFileName, Data: append([]byte(head), b...)})
	return files, nil
}

// clientAppExecutor is a SuperExec for the ClientApps of SuperNode svc,
// built as Flower's compose.yml builds its own (from the project in
// PROJECT_DIR).
func clientAppExecutor(svc string, port int, version string) map[string]any {
	dockerfile := "FROM flwr/superexec:${FLWR_VERSION:-" + version + "}\n" +
		"USER root\n" +
		"RUN apt-get update \\\n" +
		"    && apt-get -y --no-install-recommends install build-essential \\\n" +
		"    && rm -rf /var/lib/apt/lists/*\n" +
		"USER app\n" +
		"WORKDIR /app\n" +
		"COPY --chown=app:app pyproject.toml .\n" +
		"RUN sed -i 's/.*flwr\\[simulation\\].*//' pyproject.toml \\\n" +
		"  && python -m pip install -U --no-cache-dir .\n" +
		"ENTRYPOINT [\"flower-superexec\"]\n"
	return map[string]any{
		"build":       map[string]any{"context": "${PROJECT_DIR:-.}", "dockerfile_inline": dockerfile},
		"command":     []string{"--insecure", "--plugin-type", "clientapp", "--appio-api-address", fmt.Sprintf("%s:%d", svc, port)},
		"deploy":      map[string]any{"resources": map[string]any{"limits": map[string]any{"cpus": "2"}}},
		"stop_signal": "SIGINT",
		"depends_on":  []string{svc},
	}
}
