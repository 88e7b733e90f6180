package standin_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/nodekeys/nodekeys/certs"
	"github.com/nodekeys/nodekeys/flwr"
	"github.com/nodekeys/nodekeys/internal/flowerpeer"
	"github.com/nodekeys/nodekeys/internal/flwrpb"
	"github.com/nodekeys/nodekeys/internal/peer"
	"github.com/nodekeys/nodekeys/internal/standin"
	"github.com/nodekeys/nodekeys/keys"
	"github.com/nodekeys/nodekeys/sign"
)

// answer is what a SuperLink answered one call: its status and message.
type answer struct {
	Code    codes.Code
	Message string
}

func (a answer) String() string { return fmt.Sprintf("%s %q", a.Code, a.Message) }

// superlink is one side of the comparison: its Fleet and Control
// connections.
type superlink struct {
	fleet, control *grpc.ClientConn
}

func dial(t *testing.T, addr string, pool *x509.CertPool) *grpc.ClientConn {
	t.Helper()
	c, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: pool, ServerName: "localhost"})),
		grpc.WithDefaultCallOptions(grpc.ForceCodec(standin.Codec())))
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	return c
}

// call makes a unary call (or opens a server stream and reads it to its
// end) with raw request bytes, and returns its status and the response.
func call(c *grpc.ClientConn, method string, stream bool, req []byte, md ...string) (answer, []byte) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ctx = metadata.AppendToOutgoingContext(ctx, md...)
	var out []byte
	var err error
	if stream {
		var cs grpc.ClientStream
		if cs, err = c.NewStream(ctx, &grpc.StreamDesc{ServerStreams: true}, method); err == nil {
			if err = cs.SendMsg(&req); err == nil {
				err = cs.CloseSend()
			}
			for err == nil {
				err = cs.RecvMsg(&out)
			}
			if err == io.EOF {
				err = nil
			}
		}
	} else {
		err = c.Invoke(ctx, method, &req, &out)
	}
	st := status.Convert(err)
	return answer{st.Code(), st.Message()}, out
}

// TestStandinAnswersAsFlower makes the same calls to the Go stand-in
// (with WithNodeAuth) and to a real Flower 1.27 SuperLink started with
// TLS and --enable-supernode-auth, and compares each call's gRPC status
// code and message: the Fleet API's signature checks, its node rules, and
// the Control API's registrations and unknown runs and nodes. Long form
// only (NODEKEYS_LONG=1): a SuperLink takes many seconds to start here.
//
// Known and kept difference: open-source Flower has no artifact
// provider, so its PullArtifacts is Unimplemented ("The SuperLink does not
// support..."), while the stand-in answers with a URL, as a SuperLink with
// one does (the gateway's tests of PullArtifacts need an answer). Without
// WithNodeAuth the stand-in admits any node id (the gateway's tests send
// arbitrary bytes to Fleet methods); real Flower always binds the node id
// to the signing key.
func TestStandinAnswersAsFlower(t *testing.T) {
	t.Parallel()
	if !peer.Long() {
		t.Skip("a real Flower SuperLink runs in the long form, NODEKEYS_LONG=1")
	}
	f := flowerpeer.Require(t, flowerpeer.V127)
	dir := t.TempDir()
	res, err := certs.Write(certs.Options{Dir: dir})
	require.NoError(t, err)
	sl := f.StartSuperLink(t, flowerpeer.SuperLinkOptions{SupernodeAuth: true,
		TLS: &flowerpeer.TLS{CACert: res.CACert, ServerCert: res.ServerCert, ServerKey: res.ServerKey}})

	cert, err := tls.LoadX509KeyPair(res.ServerCert, res.ServerKey)
	require.NoError(t, err)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	si := standin.Start(ln, standin.WithTLS(cert), standin.WithNodeAuth())
	t.Cleanup(si.Stop)

	caPEM, err := os.ReadFile(res.CACert)
	require.NoError(t, err)
	pool := x509.NewCertPool()
	require.True(t, pool.AppendCertsFromPEM(caPEM))
	// Two nodes' keys: node registers, stranger never does.
	signer := func() *sign.Signer {
		p, err := keys.Generator{}.Pair(0)
		require.NoError(t, err)
		s, err := sign.New(p.Private)
		require.NoError(t, err)
		return s
	}
	node, stranger := signer(), signer()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "node.pem"), node.PublicKeyPEM(), 0o600))

	sl.WaitReady(t)
	sides := map[string]superlink{
		"flower":   {dial(t, sl.Fleet, pool), dial(t, sl.Control, pool)},
		"stand-in": {dial(t, si.Addr, pool), dial(t, si.Addr, pool)},
	}
	got := map[string][]answer{}
	var names []string
	for side, s := range sides {
		var ids []uint64 // the node ids each side gave, for the calls after
		step := func(name string, a answer) {
			if side == "flower" {
				names = append(names, name)
			}
			got[side] = append(got[side], a)
		}
		signed := func(s *sign.Signer, at time.Time) []string {
			h, err := s.SignTimestamp(flwr.FormatTimestamp(at))
			require.NoError(t, err)
			return []string{sign.HeaderPublicKey, string(h.PublicKey), sign.HeaderTimestamp, h.Timestamp, sign.HeaderSignature, string(h.Signature)}
		}
		fleet := func(name, method string, req []byte, md []string) []byte {
			a, out := call(s.fleet, "/flwr.proto.Fleet/"+method, false, req, md...)
			step(name, a)
			return out
		}
		control := func(name, method string, req proto.Message) []byte {
			b, err := proto.Marshal(req)
			require.NoError(t, err)
			a, out := call(s.control, "/flwr.proto.Control/"+method, method == "StreamLogs", b)
			step(name, a)
			return out
		}
		heartbeat := func(id uint64) []byte { // SendNodeHeartbeatRequest{node: {node_id}, heartbeat_interval: 30}
			n := protowire.AppendVarint(protowire.AppendTag(nil, 1, protowire.VarintType), id)
			b := protowire.AppendBytes(protowire.AppendTag(nil, 1, protowire.BytesType), n)
			return protowire.AppendFixed64(protowire.AppendTag(b, 2, protowire.Fixed64Type), 0x403e000000000000) // 30.0
		}
		activate := func(pem []byte, interval uint64) []byte { // ActivateNodeRequest
			b := protowire.AppendBytes(protowire.AppendTag(nil, 1, protowire.BytesType), pem)
			return protowire.AppendFixed64(protowire.AppendTag(b, 2, protowire.Fixed64Type), interval)
		}
		const thirty = 0x403e000000000000
		now := time.Now()

		// The Fleet API's per-call checks.
		fleet("fleet: no metadata", "SendNodeHeartbeat", heartbeat(1), nil)
		md := signed(stranger, now)
		fleet("fleet: no signature", "SendNodeHeartbeat", heartbeat(1), md[:4])
		bad := signed(stranger, now)
		bad[5] = string(append([]byte(bad[5][:len(bad[5])-1]), bad[5][len(bad[5])-1]^1))
		fleet("fleet: bad signature", "SendNodeHeartbeat", heartbeat(1), bad)
		fleet("fleet: another key's signature", "SendNodeHeartbeat", heartbeat(1), append(signed(node, now)[:2], signed(stranger, now)[2:]...))
		fleet("fleet: stale timestamp", "SendNodeHeartbeat", heartbeat(1), signed(stranger, now.Add(-306*time.Second)))
		fleet("fleet: future timestamp", "SendNodeHeartbeat", heartbeat(1), signed(stranger, now.Add(60*time.Second)))
		// Valid signatures of an unknown node.
		fleet("fleet: register through the Fleet API", "RegisterNode", protowire.AppendBytes(protowire.AppendTag(nil, 1, protowire.BytesType), stranger.PublicKeyPEM()), signed(stranger, time.Now()))
		fleet("fleet: activate an unknown key", "ActivateNode", activate(stranger.PublicKeyPEM(), thirty), signed(stranger, time.Now()))
		fleet("fleet: heartbeat of an unknown node", "SendNodeHeartbeat", heartbeat(12345), signed(stranger, time.Now()))
		fleet("fleet: unknown node pulls", "PullMessages", heartbeat(0)[:len(heartbeat(0))-9], signed(stranger, time.Now()))

		// The Control API's registrations.
		control("control: register an invalid key", "RegisterNode", &flwrpb.RegisterNodeRequest{PublicKey: []byte("not a key")})
		out := control("control: register", "RegisterNode", &flwrpb.RegisterNodeRequest{PublicKey: node.PublicKeyPEM()})
		reg := &flwrpb.RegisterNodeResponse{}
		require.NoError(t, proto.Unmarshal(out, reg), side)
		ids = append(ids, reg.GetNodeId())
		control("control: register the same key again", "RegisterNode", &flwrpb.RegisterNodeRequest{PublicKey: node.PublicKeyPEM()})

		// A registered node on the Fleet API.
		fleet("fleet: activate with an interval out of bounds", "ActivateNode", activate(node.PublicKeyPEM(), 0x4000000000000000 /* 2.0 */), signed(node, time.Now()))
		out = fleet("fleet: activate", "ActivateNode", activate(node.PublicKeyPEM(), thirty), signed(node, time.Now()))
		if side == "flower" {
			id, n := protowire.ConsumeVarint(out[1:])
			require.Positive(t, n)
			assert.Equal(t, ids[0], id, "ActivateNode answers the registered node's id")
		}
		fleet("fleet: heartbeat with another node id", "SendNodeHeartbeat", heartbeat(ids[0]+1), signed(node, time.Now()))
		fleet("fleet: another key claims the node's id", "SendNodeHeartbeat", heartbeat(ids[0]), signed(stranger, time.Now()))
		fleet("fleet: heartbeat", "SendNodeHeartbeat", heartbeat(ids[0]), signed(node, time.Now()))

		// Unknown runs and nodes.
		unknown := uint64(4242)
		control("control: stop an unknown run", "StopRun", &flwrpb.StopRunRequest{RunId: unknown})
		control("control: list an unknown run", "ListRuns", &flwrpb.ListRunsRequest{RunId: &unknown})
		control("control: logs of an unknown run", "StreamLogs", &flwrpb.StreamLogsRequest{RunId: unknown})
		control("control: unregister an unknown node", "UnregisterNode", &flwrpb.UnregisterNodeRequest{NodeId: unknown})
		control("control: unregister", "UnregisterNode", &flwrpb.UnregisterNodeRequest{NodeId: ids[0]})
		control("control: unregister again", "UnregisterNode", &flwrpb.UnregisterNodeRequest{NodeId: ids[0]})
		control("control: register an unregistered key", "RegisterNode", &flwrpb.RegisterNodeRequest{PublicKey: node.PublicKeyPEM()})
		fleet("fleet: heartbeat of an unregistered node", "SendNodeHeartbeat", heartbeat(ids[0]), signed(node, time.Now()))
	}
	require.Len(t, got["stand-in"], len(names))
	for i, name := range names {
		assert.Equal(t, got["flower"][i], got["stand-in"][i], "%s: Flower answers %s, the stand-in %s", name, got["flower"][i], got["stand-in"][i])
		t.Logf("%-50s %s", name, got["flower"][i])
	}
}
