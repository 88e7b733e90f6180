package flwr_test

import (
	"archive/tar"
	"compress/gzip"
	"errors"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/nodekeys/nodekeys/flwr"
	"github.com/nodekeys/nodekeys/internal/peer"
)

// flowerSources is where Flower's sources are: the Flower peer's src
// folder ($NODEKEYS_FLOWER, or .peers/flower at the module root, as
// ../shared/peers/flower/setup.sh makes it), or the release archives in
// ../shared/peers/flower/src.
func flowerSources(t *testing.T) string {
	_, file, _, _ := runtime.Caller(0)
	root := filepath.Join(filepath.Dir(file), "..")
	var tried []string
	for _, dir := range []string{os.Getenv("NODEKEYS_FLOWER"), filepath.Join(root, ".peers", "flower"), filepath.Join(root, "..", "shared", "peers", "flower")} {
		if dir == "" {
			continue
		}
		dir = filepath.Join(dir, "src")
		if _, err := os.Stat(dir); err == nil {
			return dir
		}
		tried = append(tried, dir)
	}
	peer.Missing(t, "Flower's sources: none of %s", strings.Join(tried, ", "))
	return ""
}

var rpcRe = regexp.MustCompile(`rpc\s+(\w+)\s*\(\s*\w+\s*\)\s*returns\s*\(\s*(stream\s+)?\w+\s*\)`)

// protoFile reads framework/proto/flwr/proto/NAME of Flower version v
// from src: the unpacked release, or its archive.
func protoFile(t *testing.T, src, v, name string) []byte {
	if b, err := os.ReadFile(filepath.Join(src, "flower-"+v, "framework", "proto", "flwr", "proto", name)); err == nil {
		return b
	}
	archive := filepath.Join(src, "flower-"+v+".tar.gz")
	f, err := os.Open(archive)
	require.NoError(t, err)
	defer f.Close()
	gz, err := gzip.NewReader(f)
	require.NoError(t, err)
	tr := tar.NewReader(gz)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			t.Fatalf("%s: no %s", archive, name)
		}
		require.NoError(t, err)
		if strings.HasSuffix(h.Name, "/framework/proto/flwr/proto/"+name) {
			b, err := io.ReadAll(tr)
			require.NoError(t, err)
			return b
		}
	}
}

// rpcs reads the methods a .proto declares, and which of them stream
// responses.
func rpcs(t *testing.T, src, v, proto string) (names []string, streaming []string) {
	for _, m := range rpcRe.FindAllStringSubmatch(string(protoFile(t, src, v, proto)), -1) {
		names = append(names, m[1])
		if m[2] != "" {
			streaming = append(streaming, m[1])
		}
	}
	return names, streaming
}

// The table says of each release what Flower's own .proto files say.
func TestMethodsMatchFlowersSources(t *testing.T) {
	src := flowerSources(t)
	for _, v := range []string{"1.22.0", "1.25.0", "1.27.0"} {
		for proto, ours := range map[string][]flwr.Method{"control.proto": flwr.ControlMethods(v), "fleet.proto": flwr.FleetMethods(v)} {
			names, streaming := rpcs(t, src, v, proto)
			assert.ElementsMatch(t, names, flwr.Names(ours), "%s %s", v, proto)
			for _, m := range ours {
				assert.Equal(t, slices.Contains(streaming, m.Name), m.ServerStreaming, "%s %s", v, m.Name)
			}
		}
	}
}

func TestLookup(t *testing.T) {
	m, ok := flwr.Lookup("/flwr.proto.Control/ShowFederation")
	require.True(t, ok)
	assert.Equal(t, flwr.Federation, m.About)
	assert.True(t, m.Lists)
	assert.True(t, m.In("1.24") && m.In("1.27.0") && !m.In("1.23.1"))
	_, ok = flwr.Lookup("/flwr.proto.Control/GetAccountInfo")
	assert.False(t, ok, "not a method of open-source Flower")
	m, _ = flwr.Lookup("/flwr.proto.Fleet/CreateNode")
	assert.True(t, m.In("1.22") && !m.In("1.23"))
	assert.Len(t, flwr.ControlMethods("1.27"), 21)
	assert.Len(t, flwr.ControlMethods("1.23"), 10)
}
