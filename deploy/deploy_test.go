package deploy_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"
	corev1 "k8s.io/api/core/v1"

	"github.com/nodekeys/nodekeys/certs"
	"github.com/nodekeys/nodekeys/deploy"
	"github.com/nodekeys/nodekeys/internal/composetest"
	"github.com/nodekeys/nodekeys/internal/peer"
	"github.com/nodekeys/nodekeys/keys/keyset"
)

func federation(t *testing.T, n int) (string, *certs.Result, *keyset.Result) {
	t.Helper()
	dir := t.TempDir()
	c, err := certs.Write(certs.Options{Dir: filepath.Join(dir, "certificates"), AddHosts: []string{"superlink.example"}})
	require.NoError(t, err)
	k, err := keyset.Write(keyset.Options{Dir: filepath.Join(dir, "keys"), Prefix: "supernode_credentials", Count: n})
	require.NoError(t, err)
	return dir, c, k
}

// docs splits a YAML stream and decodes each document as JSON into v's
// type through the Kubernetes types' json tags, as kubectl does.
func docs(t *testing.T, b []byte) []map[string]any {
	t.Helper()
	var out []map[string]any
	dec := yaml.NewDecoder(bytes.NewReader(b))
	for {
		var m map[string]any
		if err := dec.Decode(&m); err == io.EOF {
			break
		} else {
			require.NoError(t, err)
		}
		out = append(out, m)
	}
	return out
}

func asSecret(t *testing.T, m map[string]any) *corev1.Secret {
	t.Helper()
	j, err := json.Marshal(m)
	require.NoError(t, err)
	s := &corev1.Secret{}
	dec := json.NewDecoder(bytes.NewReader(j))
	dec.DisallowUnknownFields()
	require.NoError(t, dec.Decode(s))
	return s
}

func read(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	require.NoError(t, err)
	return b
}

func TestKubernetesSecretsRoundTrip(t *testing.T) {
	dir, c, k := federation(t, 3)
	f, err := deploy.Load(filepath.Join(dir, "certificates"), filepath.Join(dir, "keys"), "supernode_credentials", false)
	require.NoError(t, err)
	files, err := f.Kubernetes(deploy.K8sOptions{Namespace: "flower"})
	require.NoError(t, err)
	require.Len(t, files, 4)
	objs := docs(t, files[0].Data)
	require.Len(t, objs, 4)
	tls := asSecret(t, objs[0])
	assert.Equal(t, corev1.SecretTypeTLS, tls.Type)
	assert.Equal(t, "flower", tls.Namespace)
	assert.Equal(t, read(t, c.ServerCert), tls.Data[corev1.TLSCertKey])
	assert.Equal(t, read(t, c.ServerKey), tls.Data[corev1.TLSPrivateKeyKey])
	assert.Equal(t, read(t, c.CACert), tls.Data["ca.crt"])
	for i, p := range k.Pairs {
		s := asSecret(t, objs[i+1])
		assert.Equal(t, corev1.SecretTypeOpaque, s.Type)
		assert.Equal(t, "flower-supernode-credentials-"+string(rune('1'+i)), s.Name)
		assert.Equal(t, read(t, p.Private), s.Data["supernode.key"])
		assert.Equal(t, read(t, c.CACert), s.Data["ca.crt"])
	}
	// The values file carries the key for Flower's SuperNode chart.
	var values struct {
		Global struct {
			NodeAuth struct {
				Enabled                 bool   `yaml:"enabled"`
				AuthSupernodePrivateKey string `yaml:"authSupernodePrivateKey"`
			} `yaml:"nodeAuth"`
		} `yaml:"global"`
	}
	require.NoError(t, yaml.Unmarshal(files[1].Data, &values))
	assert.Equal(t, string(read(t, k.Pairs[0].Private)), values.Global.NodeAuth.AuthSupernodePrivateKey)
	for _, f := range files {
		assert.True(t, f.Secret, "%s holds private keys", f.Name)
	}
}

func TestKubernetesCertManager(t *testing.T) {
	dir, c, _ := federation(t, 1)
	f, err := deploy.Load(filepath.Join(dir, "certificates"), filepath.Join(dir, "keys"), "supernode_credentials", true)
	require.NoError(t, err)
	files, err := f.Kubernetes(deploy.K8sOptions{Namespace: "fl", CertManager: true})
	require.NoError(t, err)
	objs := docs(t, files[0].Data)
	ca := asSecret(t, objs[0])
	assert.Equal(t, read(t, c.CACert), ca.Data[corev1.TLSCertKey])
	assert.Equal(t, read(t, filepath.Join(dir, "certificates", "ca.key")), ca.Data[corev1.TLSPrivateKeyKey])
	assert.Equal(t, "Issuer", objs[1]["kind"])
	assert.Equal(t, "flower-dev-ca", objs[1]["spec"].(map[string]any)["ca"].(map[string]any)["secretName"])
	cert := objs[2]
	assert.Equal(t, "Certificate", cert["kind"])
	spec := cert["spec"].(map[string]any)
	assert.Equal(t, "flower-superlink-tls", spec["secretName"])
	assert.ElementsMatch(t, []any{"localhost", "superlink.example"}, spec["dnsNames"])
	assert.ElementsMatch(t, []any{"127.0.0.1", "::1"}, spec["ipAddresses"])
	for _, o := range objs {
		if o["kind"] == "Secret" {
			assert.NotEqual(t, "flower-superlink-tls", o["metadata"].(map[string]any)["name"], "cert-manager writes the server Secret")
		}
	}
}

// writeCompose writes the Compose output of f into dir as the CLI does
// (private keys 0600, readable by Flower's user through an ACL).
func writeCompose(t *testing.T, f *deploy.Federation, o deploy.ComposeOptions) []deploy.ComposeFile {
	t.Helper()
	files, err := f.Compose(o)
	require.NoError(t, err)
	require.NoError(t, os.MkdirAll(filepath.Join(o.Dir, "secrets"), 0o700))
	for _, file := range files {
		mode := os.FileMode(0o644)
		if file.Private {
			mode = 0o600
		}
		require.NoError(t, os.WriteFile(filepath.Join(o.Dir, file.Name), file.Data, mode))
	}
	return files
}

// The Compose output, merged after each Flower version's own compose.yml
// by compose-go (the loader docker compose uses), runs every SuperNode
// there is a key for, with every file present, TLS with the federation's
// CA and the node authentication of that version.
func TestComposeMergesWithFlowersFiles(t *testing.T) {
	dir := t.TempDir()
	c, err := certs.Write(certs.Options{Dir: filepath.Join(dir, "certificates"), AddHosts: []string{"superlink"}})
	require.NoError(t, err)
	k, err := keyset.Write(keyset.Options{Dir: filepath.Join(dir, "keys"), Prefix: "supernode_credentials", Count: 3})
	require.NoError(t, err)
	for _, tc := range []struct {
		version      string
		registration bool
	}{{"1.22.0", false}, {"1.25.0", true}, {"1.27.0", true}} {
		complete := composetest.FlowerComplete(t, tc.version)
		// Three nodes (one more than Flower's file) for every version;
		// one (Flower's second switched off) and two for the newest; all
		// of them in the long form.
		counts := []int{3}
		if tc.version == "1.27.0" || peer.Long() {
			counts = []int{1, 2, 3}
		}
		for _, n := range counts {
			t.Run(fmt.Sprintf("%s/%d", tc.version, n), func(t *testing.T) {
				f, err := deploy.Load(filepath.Join(dir, "certificates"), filepath.Join(dir, "keys"), "supernode_credentials", false)
				require.NoError(t, err)
				f.Nodes = f.Nodes[:n]
				out := filepath.Join(t.TempDir(), "compose")
				writeCompose(t, f, deploy.ComposeOptions{Dir: out, FlowerVersion: tc.version})

				p := composetest.Load(t, filepath.Join(complete, "compose.yml"), filepath.Join(out, deploy.ComposeFileName))
				got := composetest.Check(t, p, composetest.Want{Nodes: n, Registration: tc.registration, CACert: c.CACert})
				for i, pair := range k.Pairs[:n] {
					assert.Equal(t, read(t, pair.Private), read(t, got[fmt.Sprintf("supernode-%d", i+1)]))
				}
				if n < 2 {
					assert.Contains(t, p.DisabledServices, "supernode-2", "Flower's keyless SuperNode stays off")
				}
			})
		}
	}
}

func TestComposeRefuses(t *testing.T) {
	dir, _, _ := federation(t, 1)
	f, err := deploy.Load(filepath.Join(dir, "certificates"), filepath.Join(dir, "keys"), "supernode_credentials", false)
	require.NoError(t, err)
	_, err = f.Compose(deploy.ComposeOptions{Dir: filepath.Join(dir, "out")})
	assert.ErrorIs(t, err, deploy.ErrNoServiceHost, "SuperNodes dial superlink:9092")
	_, err = f.Compose(deploy.ComposeOptions{Dir: "out"})
	assert.ErrorContains(t, err, "absolute path")
	f.Hosts = append(f.Hosts, "superlink")
	_, err = f.Compose(deploy.ComposeOptions{Dir: filepath.Join(dir, "out"), FlowerVersion: "2.x"})
	assert.ErrorContains(t, err, `"2.x" is not a Flower version`)
}

// GrantRead lets Flower's container user, and no one else, read a 0600
// file that stays its owner's: Compose ignores uid, gid and mode on file
// secrets, so the host file's own permissions must let uid 49999 read.
func TestGrantRead(t *testing.T) {
	p := filepath.Join(t.TempDir(), "server.key")
	require.NoError(t, os.WriteFile(p, []byte("key\n"), 0o600))
	assert.False(t, composetest.ReadableBy(t, p, deploy.FlowerUID), "0600 alone is not enough")
	require.NoError(t, deploy.GrantRead(p, deploy.FlowerUID))
	assert.True(t, composetest.ReadableBy(t, p, deploy.FlowerUID))
	assert.False(t, composetest.ReadableBy(t, p, deploy.FlowerUID-1), "nor anyone else")
	fi, err := os.Stat(p)
	require.NoError(t, err)
	assert.Zero(t, fi.Mode().Perm()&0o007, "others get nothing")
}
