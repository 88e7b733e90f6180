package deploy_test

import (
	"bytes"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"
	corev1 "k8s.io/api/core/v1"

	"github.com/nodekeys/nodekeys/certs"
	"github.com/nodekeys/nodekeys/deploy"
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

func TestComposeSecrets(t *testing.T) {
	dir, c, k := federation(t, 2)
	f, err := deploy.Load(filepath.Join(dir, "certificates"), filepath.Join(dir, "keys"), "supernode_credentials", false)
	require.NoError(t, err)
	files, err := f.Compose()
	require.NoError(t, err)
	byName := map[string]deploy.ComposeFile{}
	for _, f := range files {
		byName[f.Name] = f
	}
	assert.Equal(t, read(t, c.ServerKey), byName["secrets/server.key"].Data)
	assert.True(t, byName["secrets/server.key"].Private)
	assert.False(t, byName["secrets/ca.crt"].Private)
	assert.Equal(t, read(t, k.Pairs[1].Private), byName["secrets/supernode_credentials_2"].Data)
	var spec struct {
		Secrets  map[string]struct{ File string }
		Services map[string]struct {
			Secrets []struct{ Source, Target string }
		}
	}
	require.NoError(t, yaml.Unmarshal(byName["secrets.yaml"].Data, &spec))
	targets := map[string]string{}
	for _, s := range spec.Services["superlink"].Secrets {
		targets[s.Target] = spec.Secrets[s.Source].File
	}
	assert.Equal(t, map[string]string{
		"/app/certificates/ca.crt": "./secrets/ca.crt", "/app/certificates/server.pem": "./secrets/server.pem",
		"/app/certificates/server.key": "./secrets/server.key"}, targets)
	require.Len(t, spec.Services["supernode-2"].Secrets, 2)
	assert.True(t, strings.HasSuffix(spec.Services["supernode-2"].Secrets[1].Target, "/supernode_credentials_2"))
}
