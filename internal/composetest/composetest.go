// Package composetest loads a Compose output merged with Flower's own
// Compose files through compose-go, the loader `docker compose` uses, and
// checks what a deployment needs of it: every file present, TLS with the
// federation's CA, node authentication on every SuperNode.
package composetest

import (
	"context"
	"crypto/x509"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/nodekeys/nodekeys/certs"
	"github.com/nodekeys/nodekeys/internal/peer"
)

// FlowerComplete returns the folder of Flower's framework/docker/complete
// Compose files of version ("1.27.0") among the peers.
func FlowerComplete(t testing.TB, version string) string {
	t.Helper()
	dir := filepath.Join(peer.FlowerDir(t), "src", "flower-"+version, "framework", "docker", "complete")
	if _, err := os.Stat(filepath.Join(dir, "compose.yml")); err != nil {
		t.Fatalf("Flower %s's compose.yml: %v", version, err)
	}
	return dir
}

// Load loads files as `docker compose -f F1 -f F2 ... config` does, run
// from the folder of the first file with an empty environment: relative
// paths resolve against that folder.
func Load(t testing.TB, files ...string) *types.Project {
	t.Helper()
	opts, err := cli.NewProjectOptions(files,
		cli.WithEnv(nil), cli.WithName("complete"), cli.WithResolvedPaths(true))
	require.NoError(t, err)
	p, err := opts.LoadProject(context.Background())
	require.NoError(t, err, "compose-go refuses the merged project")
	return p
}

// Want is what Check expects of a merged project.
type Want struct {
	// Nodes is the number of SuperNode services that run.
	Nodes int
	// Registration: --enable-supernode-auth (Flower 1.23 and later),
	// else the CSV allowlist with each SuperNode's public key file.
	Registration bool
	// CACert is the federation's CA certificate file.
	CACert string
}

// Check checks p against w and returns, per running SuperNode service,
// the host file of its private key.
func Check(t testing.TB, p *types.Project, w Want) map[string]string {
	t.Helper()
	// Every service that runs has an image or a build, and every file
	// it mounts exists where Compose looks for it.
	for name, s := range p.Services {
		assert.True(t, s.Image != "" || s.Build != nil, "service %s has neither image nor build", name)
		for _, ref := range s.Secrets {
			sec, ok := p.Secrets[ref.Source]
			require.True(t, ok, "service %s: secret %s is not defined", name, ref.Source)
			require.True(t, filepath.IsAbs(sec.File), "secret %s: %s", ref.Source, sec.File)
			fi, err := os.Stat(sec.File)
			if assert.NoError(t, err, "service %s: secret %s", name, ref.Source) {
				assert.True(t, fi.Mode().IsRegular(), sec.File)
			}
		}
		for _, v := range s.Volumes {
			if v.Type == types.VolumeTypeBind {
				_, err := os.Stat(v.Source)
				assert.NoError(t, err, "service %s: bind source", name)
			}
		}
	}
	hostFile := func(s types.ServiceConfig, target string) string {
		for _, ref := range s.Secrets {
			if ref.Target == target {
				return p.Secrets[ref.Source].File
			}
		}
		t.Errorf("service %s mounts nothing at %s", s.Name, target)
		return ""
	}
	ca, err := os.ReadFile(w.CACert)
	require.NoError(t, err)

	link, ok := p.Services["superlink"]
	require.True(t, ok, "no superlink service")
	args := flagValues(link.Command)
	assert.NotContains(t, args, "--insecure", "the SuperLink speaks TLS")
	for _, f := range []string{"--ssl-ca-certfile", "--ssl-certfile", "--ssl-keyfile"} {
		require.Contains(t, args, f)
	}
	linkCA, err := os.ReadFile(hostFile(link, args["--ssl-ca-certfile"]))
	require.NoError(t, err)
	assert.Equal(t, ca, linkCA, "the SuperLink has the federation's CA")
	// SuperNodes dial superlink:9092: the certificate must hold the name
	// and chain to the CA they are given.
	serverCert, err := certs.ReadCertificate(hostFile(link, args["--ssl-certfile"]))
	require.NoError(t, err)
	roots := x509.NewCertPool()
	require.True(t, roots.AppendCertsFromPEM(ca))
	_, err = serverCert.Verify(x509.VerifyOptions{DNSName: "superlink", Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
	assert.NoError(t, err, "a SuperNode dialling superlink:9092 accepts the certificate")
	if w.Registration {
		assert.Contains(t, args, "--enable-supernode-auth")
		assert.NotContains(t, args, "--auth-list-public-keys")
	} else {
		require.Contains(t, args, "--auth-list-public-keys")
		assert.NotContains(t, args, "--enable-supernode-auth")
	}

	keys := map[string]string{}
	for name, s := range p.Services {
		if !strings.HasPrefix(name, "supernode-") {
			continue
		}
		a := flagValues(s.Command)
		assert.NotContains(t, a, "--insecure", name)
		assert.Equal(t, "superlink:9092", a["--superlink"], name)
		require.Contains(t, a, "--root-certificates", name)
		nodeCA, err := os.ReadFile(hostFile(s, a["--root-certificates"]))
		require.NoError(t, err)
		assert.Equal(t, ca, nodeCA, "%s trusts the federation's CA, not Flower's", name)
		require.Contains(t, a, "--auth-supernode-private-key", name)
		keys[name] = hostFile(s, a["--auth-supernode-private-key"])
		if !w.Registration {
			require.Contains(t, a, "--auth-supernode-public-key", name)
			pub, err := os.ReadFile(hostFile(s, a["--auth-supernode-public-key"]))
			require.NoError(t, err)
			csv, err := os.ReadFile(hostFile(link, args["--auth-list-public-keys"]))
			require.NoError(t, err)
			assert.True(t, slices.Contains(strings.Split(strings.TrimSpace(string(csv)), ","), strings.TrimSpace(string(pub))),
				"%s's key is in the SuperLink's allowlist", name)
		}
		// Its ClientApp executor, if it has one, runs too.
		if ex, ok := p.Services["superexec-clientapp-"+strings.TrimPrefix(name, "supernode-")]; ok {
			addr := flagValues(ex.Command)["--appio-api-address"]
			assert.Equal(t, name+":"+strings.Split(a["--clientappio-api-address"], ":")[1], addr)
		}
	}
	assert.Len(t, keys, w.Nodes, "SuperNode services that run")
	return keys
}

// flagValues maps each --flag of a command to its value: the next word,
// or after '='; a flag without a value maps to "".
func flagValues(cmd types.ShellCommand) map[string]string {
	out := map[string]string{}
	for i := 0; i < len(cmd); i++ {
		w := cmd[i]
		if !strings.HasPrefix(w, "--") {
			continue
		}
		if k, v, ok := strings.Cut(w, "="); ok {
			out[k] = v
			continue
		}
		if i+1 < len(cmd) && !strings.HasPrefix(cmd[i+1], "--") {
			out[w] = cmd[i+1]
			i++
			continue
		}
		out[w] = ""
	}
	return out
}
