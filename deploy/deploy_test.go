package deploy_test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/yannh/kubeconform/pkg/validator"
	"go.yaml.in/yaml/v3"
	corev1 "k8s.io/api/core/v1"

	"github.com/nodekeys/nodekeys/certs"
	"github.com/nodekeys/nodekeys/deploy"
	"github.com/nodekeys/nodekeys/internal/composetest"
	"github.com/nodekeys/nodekeys/internal/k8stest"
	"github.com/nodekeys/nodekeys/internal/peer"
	"github.com/nodekeys/nodekeys/keyset"
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

func byName(files []deploy.K8sFile) map[string]deploy.K8sFile {
	m := map[string]deploy.K8sFile{}
	for _, f := range files {
		m[f.Name] = f
	}
	return m
}

func TestKubernetesSecretsRoundTrip(t *testing.T) {
	dir, c, k := federation(t, 3)
	f, err := deploy.Load(filepath.Join(dir, "certificates"), filepath.Join(dir, "keys"), "supernode_credentials", false)
	require.NoError(t, err)
	files, err := f.Kubernetes(deploy.K8sOptions{Namespace: "flower"})
	require.NoError(t, err)
	m := byName(files)
	require.Len(t, files, 2+1+3)
	objs := docs(t, m["superlink.yaml"].Data)
	require.Len(t, objs, 1)
	tls := asSecret(t, objs[0])
	assert.Equal(t, corev1.SecretTypeTLS, tls.Type)
	assert.Equal(t, "flower-superlink-tls", tls.Name)
	assert.Equal(t, "flower", tls.Namespace)
	assert.Equal(t, read(t, c.ServerCert), tls.Data[corev1.TLSCertKey])
	assert.Equal(t, read(t, c.ServerKey), tls.Data[corev1.TLSPrivateKeyKey])
	assert.Equal(t, read(t, c.CACert), tls.Data["ca.crt"])
	assert.True(t, m["superlink.yaml"].Secret)
	objs = docs(t, m["supernodes.yaml"].Data)
	require.Len(t, objs, 1)
	ca := asSecret(t, objs[0])
	assert.Equal(t, "flower-superlink-ca", ca.Name)
	assert.Equal(t, read(t, c.CACert), ca.Data["ca.crt"])
	assert.Empty(t, ca.Data[corev1.TLSPrivateKeyKey], "the SuperNodes' Secret holds no private key")
	assert.False(t, m["supernodes.yaml"].Secret)
	// No SuperNode private key is in any file: helm reads it from the
	// key folder, and the chart keeps the one copy in the cluster.
	for _, file := range files {
		for _, p := range k.Pairs {
			key := read(t, p.Private)
			assert.NotContains(t, string(file.Data), string(key), file.Name)
			assert.NotContains(t, string(file.Data), b64(key), file.Name)
		}
		assert.NotContains(t, string(file.Data), "PRIVATE KEY", file.Name)
	}
}

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

func TestKubernetesCertManager(t *testing.T) {
	dir, c, _ := federation(t, 1)
	f, err := deploy.Load(filepath.Join(dir, "certificates"), filepath.Join(dir, "keys"), "supernode_credentials", true)
	require.NoError(t, err)
	files, err := f.Kubernetes(deploy.K8sOptions{Namespace: "fl", CertManager: true})
	require.NoError(t, err)
	objs := docs(t, byName(files)["superlink.yaml"].Data)
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

// The strict schemas refuse what they must: the validation can fail.
func TestKubeconformIsStrict(t *testing.T) {
	for name, doc := range map[string]string{
		"unknown field":   "apiVersion: v1\nkind: Secret\nmetadata: {name: a}\ndatas: {}\n",
		"not base64":      "apiVersion: v1\nkind: Secret\nmetadata: {name: a}\ndata: {k: \"-not base64-\"}\n",
		"bad algorithm":   "apiVersion: cert-manager.io/v1\nkind: Certificate\nmetadata: {name: a}\nspec: {secretName: a, issuerRef: {name: a}, privateKey: {algorithm: EC}}\n",
		"no issuerRef":    "apiVersion: cert-manager.io/v1\nkind: Certificate\nmetadata: {name: a}\nspec: {secretName: a}\n",
		"no schema":       "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n",
		"duplicate key":   "apiVersion: v1\nkind: Secret\nmetadata: {name: a, name: b}\n",
		"issuer CA field": "apiVersion: cert-manager.io/v1\nkind: Issuer\nmetadata: {name: a}\nspec: {ca: {secret: a}}\n",
	} {
		res := k8stest.Validate(t, name, []byte(doc))
		require.Len(t, res, 1, name)
		assert.NotEqual(t, validator.Valid, res[0].Status, name)
	}
	res := k8stest.Validate(t, "valid", []byte("apiVersion: v1\nkind: Secret\nmetadata: {name: a}\ndata: {k: YQ==}\n"))
	require.Len(t, res, 1)
	assert.Equal(t, validator.Valid, res[0].Status, res[0].Err)
}

// The manifests validate against strict schemas; the values files turn
// the charts' own TLS off, name only Secrets the manifests define, and
// list the node keys for the Flower version's node authentication.
func TestKubernetesPlugsIntoFlowersCharts(t *testing.T) {
	dir, c, k := federation(t, 2)
	for _, certManager := range []bool{false, true} {
		for _, version := range []string{"1.22.0", "1.27.0"} {
			t.Run(fmt.Sprintf("cert-manager=%v/%s", certManager, version), func(t *testing.T) {
				f, err := deploy.Load(filepath.Join(dir, "certificates"), filepath.Join(dir, "keys"), "supernode_credentials", certManager)
				require.NoError(t, err)
				o := deploy.K8sOptions{Namespace: "flower", CertManager: certManager, FlowerVersion: version}
				files, err := f.Kubernetes(o)
				require.NoError(t, err)
				secrets := map[string]*corev1.Secret{}
				defined := map[deploy.K8sObject]bool{}
				var values []deploy.K8sFile
				for _, file := range files {
					if strings.HasPrefix(file.Name, deploy.ValuesDir+"/") {
						values = append(values, file)
						continue
					}
					k8stest.RequireValid(t, file.Name, file.Data)
					for _, o := range docs(t, file.Data) {
						name := o["metadata"].(map[string]any)["name"].(string)
						defined[deploy.K8sObject{Kind: o["kind"].(string), Name: name}] = true
						if o["kind"] == "Secret" {
							secrets[name] = asSecret(t, o)
						}
						if o["kind"] == "Certificate" {
							// cert-manager writes the Secret it names.
							defined[deploy.K8sObject{Kind: "Secret", Name: o["spec"].(map[string]any)["secretName"].(string)}] = true
						}
					}
				}
				assert.ElementsMatch(t, deploy.Objects(o), slices.Collect(maps.Keys(defined)))
				require.Len(t, values, 1+2)

				var link struct {
					TLS struct {
						Enabled        bool
						ExistingSecret string `yaml:"existingSecret"`
						Issuer         struct{ Enabled bool }
						Certificate    struct{ Enabled bool }
					}
					Global struct {
						NodeAuth struct {
							Enabled            bool
							AuthListPublicKeys []string `yaml:"authListPublicKeys"`
						} `yaml:"nodeAuth"`
					}
				}
				sl := byName(files)["values/superlink.yaml"]
				require.NoError(t, yaml.Unmarshal(sl.Data, &link))
				assert.True(t, link.TLS.Enabled)
				assert.True(t, defined[deploy.K8sObject{Kind: "Secret", Name: link.TLS.ExistingSecret}], link.TLS.ExistingSecret)
				assert.False(t, link.TLS.Issuer.Enabled, "the chart's own issuer is off")
				assert.False(t, link.TLS.Certificate.Enabled, "with the chart's certificate on, existingSecret is ignored")
				assert.True(t, link.Global.NodeAuth.Enabled)
				var pubs []string
				for _, p := range k.Pairs {
					pubs = append(pubs, strings.TrimSpace(string(read(t, p.Public))))
				}
				if version == "1.22.0" {
					assert.Equal(t, pubs, link.Global.NodeAuth.AuthListPublicKeys)
				} else {
					assert.Empty(t, link.Global.NodeAuth.AuthListPublicKeys, "1.23 and later register keys")
					for _, n := range f.Nodes {
						assert.Contains(t, string(sl.Data), n.Name+" "+n.Fingerprint)
					}
				}

				for i, p := range k.Pairs {
					var node struct {
						Supernode struct {
							Superlink struct {
								Address     string
								Port        int
								Certificate struct {
									ExistingSecret string `yaml:"existingSecret"`
								}
							}
						}
						Global struct {
							NodeAuth struct {
								Enabled                 bool
								AuthSupernodePrivateKey string `yaml:"authSupernodePrivateKey"`
								AuthSupernodePublicKey  string `yaml:"authSupernodePublicKey"`
							} `yaml:"nodeAuth"`
						}
					}
					file := byName(files)[fmt.Sprintf("values/supernode-credentials-%d.yaml", i+1)]
					require.NoError(t, yaml.Unmarshal(file.Data, &node), file.Name)
					ref := node.Supernode.Superlink.Certificate.ExistingSecret
					require.Contains(t, secrets, ref, "%s names a Secret the output defines", file.Name)
					assert.Equal(t, read(t, c.CACert), secrets[ref].Data["ca.crt"])
					assert.Equal(t, "superlink.example", node.Supernode.Superlink.Address)
					assert.Equal(t, 9092, node.Supernode.Superlink.Port)
					assert.True(t, node.Global.NodeAuth.Enabled)
					assert.Empty(t, node.Global.NodeAuth.AuthSupernodePrivateKey, "no key inline")
					assert.Contains(t, string(file.Data), "--set-file global.nodeAuth.authSupernodePrivateKey=KEYS/"+filepath.Base(p.Private))
					if version == "1.22.0" {
						assert.Equal(t, pubs[i], node.Global.NodeAuth.AuthSupernodePublicKey)
					}
				}
			})
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
