package standin

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/nodekeys/nodekeys/internal/flwrpb"
	"github.com/nodekeys/nodekeys/keys"
)

// nodeRegistry keeps SuperNode registrations as a Flower SuperLink with
// in-memory state does (docs/protocol.md, "Registration"): keys matched as exact PEM
// bytes; a key registered twice refused; an unregistered key burned for
// good; the owner recorded ("none" without account auth); everything lost
// on Restart.
type nodeRegistry struct {
	mu     sync.Mutex
	nodes  map[uint64]*flwrpb.NodeInfo
	byPEM  map[string]uint64
	calls  int
	failFn func(n int) bool
}

func newNodeRegistry() *nodeRegistry {
	return &nodeRegistry{nodes: map[uint64]*flwrpb.NodeInfo{}, byPEM: map[string]uint64{}}
}

// FailRegistrations makes RegisterNode call n (counted from 1 since the
// start or the last Restart) fail with Unavailable when fail(n) is true:
// a partial failure to retry.
func FailRegistrations(fail func(n int) bool) Option {
	return func(s *Server) { s.nodes.failFn = fail }
}

// Restart forgets every registration, as a SuperLink with in-memory state
// does when it restarts.
func (s *Server) Restart() {
	s.nodes.mu.Lock()
	defer s.nodes.mu.Unlock()
	s.nodes.nodes = map[uint64]*flwrpb.NodeInfo{}
	s.nodes.byPEM = map[string]uint64{}
	s.nodes.calls = 0
}

// Registered returns how many keys are registered and not unregistered.
func (s *Server) Registered() int {
	s.nodes.mu.Lock()
	defer s.nodes.mu.Unlock()
	n := 0
	for _, info := range s.nodes.nodes {
		if info.UnregisteredAt == nil {
			n++
		}
	}
	return n
}

func newNodeID() uint64 {
	var b [8]byte
	rand.Read(b[:])
	return binary.LittleEndian.Uint64(b[:]) >> 1
}

// handle serves the node methods of the Control API; ok is false for any
// other method.
func (r *nodeRegistry) handle(_ context.Context, method string, req []byte) (out []byte, ok bool, err error) {
	var resp proto.Message
	switch method {
	case "/flwr.proto.Control/RegisterNode":
		in := &flwrpb.RegisterNodeRequest{}
		if err := proto.Unmarshal(req, in); err != nil {
			return nil, true, status.Error(codes.InvalidArgument, err.Error())
		}
		resp, err = r.register(in.PublicKey)
	case "/flwr.proto.Control/UnregisterNode":
		in := &flwrpb.UnregisterNodeRequest{}
		if err := proto.Unmarshal(req, in); err != nil {
			return nil, true, status.Error(codes.InvalidArgument, err.Error())
		}
		resp, err = r.unregister(in.NodeId)
	case "/flwr.proto.Control/ListNodes":
		resp = r.list()
	default:
		return nil, false, nil
	}
	if err != nil {
		return nil, true, err
	}
	out, err = proto.Marshal(resp)
	return out, true, err
}

func (r *nodeRegistry) register(pem []byte) (proto.Message, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls++
	if r.failFn != nil && r.failFn(r.calls) {
		return nil, status.Error(codes.Unavailable, "stand-in: this registration fails, as asked")
	}
	if _, err := keys.ParsePEMPublicKey(pem); err != nil {
		return nil, status.Error(codes.FailedPrecondition, "The provided public key is not valid.")
	}
	if _, ok := r.byPEM[string(pem)]; ok {
		// Registered, or unregistered and so burned: never again.
		return nil, status.Error(codes.FailedPrecondition, "Public key already in use.")
	}
	id := newNodeID()
	r.nodes[id] = &flwrpb.NodeInfo{NodeId: id, OwnerAid: "<id:none>", OwnerName: "none", Status: "registered",
		RegisteredAt: time.Now().UTC().Format(time.RFC3339Nano), PublicKey: append([]byte(nil), pem...)}
	r.byPEM[string(pem)] = id
	return &flwrpb.RegisterNodeResponse{NodeId: &id}, nil
}

func (r *nodeRegistry) unregister(id uint64) (proto.Message, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	n, ok := r.nodes[id]
	if !ok || n.UnregisteredAt != nil {
		return nil, status.Error(codes.NotFound, "Node ID not found for account.")
	}
	at := time.Now().UTC().Format(time.RFC3339Nano)
	n.UnregisteredAt, n.Status = &at, "unregistered"
	return &flwrpb.UnregisterNodeResponse{}, nil
}

func (r *nodeRegistry) list() proto.Message {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := &flwrpb.ListNodesResponse{Now: time.Now().UTC().Format(time.RFC3339Nano)}
	for _, n := range r.nodes {
		out.NodesInfo = append(out.NodesInfo, proto.Clone(n).(*flwrpb.NodeInfo))
	}
	return out
}
