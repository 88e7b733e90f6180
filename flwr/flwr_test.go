package flwr_test

import (
	"archive/tar"
	"compress/gzip"
	"errors"
	"fmt"
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
	"google.golang.org/protobuf/proto"

	"github.com/nodekeys/nodekeys/flwr"
	"github.com/nodekeys/nodekeys/internal/flwrpb"
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

var (
	messageRe = regexp.MustCompile(`(?s)message\s+(\w+)\s*\{(.*?)\}`)
	fieldRe   = regexp.MustCompile(`(?m)^\s*(repeated\s+|optional\s+)?([\w.]+)\s+(\w+)\s*=\s*(\d+)\s*;`)
)

// fields returns "NAME TYPE NUMBER" (TYPE prefixed "repeated ") of message
// msg in a .proto's text.
func fields(t *testing.T, proto []byte, msg string) []string {
	for _, m := range messageRe.FindAllStringSubmatch(string(proto), -1) {
		if m[1] != msg {
			continue
		}
		var out []string
		for _, f := range fieldRe.FindAllStringSubmatch(m[2], -1) {
			typ := f[2]
			if strings.TrimSpace(f[1]) == "repeated" {
				typ = "repeated " + typ
			}
			out = append(out, f[3]+" "+typ+" "+f[4])
		}
		return out
	}
	t.Fatalf("no message %s", msg)
	return nil
}

// ours describes a flwrpb message as fields does a .proto's.
func ours(m proto.Message) []string {
	var out []string
	fs := m.ProtoReflect().Descriptor().Fields()
	for i := range fs.Len() {
		f := fs.Get(i)
		typ := f.Kind().String()
		if f.Message() != nil {
			typ = string(f.Message().Name())
		}
		if f.IsList() {
			typ = "repeated " + typ
		}
		out = append(out, fmt.Sprintf("%s %s %d", f.Name(), typ, f.Number()))
	}
	return out
}

// The federation messages the gateway filters have the field numbers of
// Flower's own: Federation as 1.24 and 1.25 send it, and as 1.26 and later
// do; Account, Member and Invitation of 1.27. (The responses that carry a
// Federation declare it as bytes, so that it can be read in either
// layout.)
func TestFederationMessagesMatchFlowersSources(t *testing.T) {
	src := flowerSources(t)
	v125 := protoFile(t, src, "1.25.0", "federation.proto")
	assert.ElementsMatch(t, fields(t, v125, "Federation"), ours(&flwrpb.FederationV124{}))
	v127 := protoFile(t, src, "1.27.0", "federation.proto")
	assert.ElementsMatch(t, fields(t, v127, "Federation"), ours(&flwrpb.Federation{}))
	for msg, m := range map[string]proto.Message{"Account": &flwrpb.Account{}, "Member": &flwrpb.Member{}, "Invitation": &flwrpb.Invitation{}} {
		assert.ElementsMatch(t, fields(t, v127, msg), ours(m), msg)
	}
	control := protoFile(t, src, "1.27.0", "control.proto")
	asBytes := func(fs []string) []string {
		out := slices.Clone(fs)
		for i, f := range out {
			out[i] = strings.NewReplacer(" Federation ", " bytes ").Replace(f)
		}
		return out
	}
	for msg, m := range map[string]proto.Message{
		"ListFederationsResponse": &flwrpb.ListFederationsResponse{}, "ShowFederationRequest": &flwrpb.ShowFederationRequest{},
		"ShowFederationResponse": &flwrpb.ShowFederationResponse{}, "CreateFederationResponse": &flwrpb.CreateFederationResponse{},
		"ListInvitationsResponse": &flwrpb.ListInvitationsResponse{},
	} {
		assert.ElementsMatch(t, asBytes(fields(t, control, msg)), ours(m), msg)
	}
}
