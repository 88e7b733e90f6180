// Package k8stest validates Kubernetes manifests with kubeconform, as a
// library, against the strict schemas in schemas/: core/v1 Secret and
// cert-manager.io/v1 Issuer and Certificate (the network is closed to
// tests, so the schemas are in the tree). Unknown fields, duplicate keys
// and kinds without a schema are errors.
package k8stest

import (
	"bytes"
	"io"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/yannh/kubeconform/pkg/validator"
)

// Validate returns kubeconform's result for each document of the YAML
// stream b, read as the file name.
func Validate(t testing.TB, name string, b []byte) []validator.Result {
	t.Helper()
	_, self, _, ok := runtime.Caller(0)
	require.True(t, ok)
	schemas := filepath.Join(filepath.Dir(self), "schemas")
	v, err := validator.New([]string{schemas + "/{{ .ResourceKind }}{{ .KindSuffix }}.json"}, validator.Opts{Strict: true})
	require.NoError(t, err)
	return v.Validate(name, io.NopCloser(bytes.NewReader(b)))
}

// RequireValid fails the test unless every document of b is valid.
func RequireValid(t testing.TB, name string, b []byte) {
	t.Helper()
	res := Validate(t, name, b)
	require.NotEmpty(t, res, name)
	for _, r := range res {
		require.Equal(t, validator.Valid, r.Status, "%s: %v %v", name, r.Err, r.ValidationErrors)
	}
}
