package standin

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"math"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/nodekeys/nodekeys/flwr"
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
	ids    []uint64 // the next registrations' node ids (WithNodeIDs)
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

// WithNodeIDs gives the first registrations these node ids, in order
// (random ids, as Flower gives, after them): ids above 2^53, which a JSON
// number does not hold exactly, on purpose.
func WithNodeIDs(ids ...uint64) Option {
	return func(s *Server) { s.nodes.ids = append([]uint64(nil), ids...) }
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
		return nil, status.Error(codes.FailedPrecondition, "The provided public key is not valid")
	}
	if _, ok := r.byPEM[string(pem)]; ok {
		// Registered, or unregistered and so burned: never again.
		return nil, status.Error(codes.FailedPrecondition, "Public key already in use")
	}
	id := newNodeID()
	if len(r.ids) > 0 {
		id, r.ids = r.ids[0], r.ids[1:]
	}
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
		return nil, status.Error(codes.NotFound, "Node ID not found for account")
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

// WithNodeAuth answers Fleet calls past the signature check as a Flower
// 1.27 SuperLink started with --enable-supernode-auth does, for the keys
// registered through the Control API: RegisterNode is refused;
// ActivateNode needs the registered key its request carries (and a
// heartbeat interval Flower accepts) and answers its node id; every other
// call must name the node id of the key that signed it ("Invalid node
// ID"). What passes is answered with its request, as without the option.
// Text commands are not checked.
func WithNodeAuth() Option { return func(s *Server) { s.nodeAuth = true } }

// Flower's bounds of a SuperNode's heartbeat interval, in seconds.
const minHeartbeat, maxHeartbeat = 10, 1800

// fleet applies Flower's node rules to a Fleet call signed by key (PEM);
// ok is true when it answers the call itself (out, or a refusal).
func (r *nodeRegistry) fleet(method string, key, req []byte) (out []byte, ok bool, err error) {
	fields, err := topFields(req)
	if err != nil {
		return nil, true, status.Error(codes.Internal, "the request does not decode")
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	switch strings.TrimPrefix(method, flwr.FleetPrefix) {
	case "RegisterNode":
		return nil, true, status.Error(codes.FailedPrecondition, "SuperNode authentication is enabled. All SuperNodes must be registered via the CLI.")
	case "ActivateNode":
		// The key in the request, not the one that signed it.
		id, found := r.active(fields.bytes[1])
		if !found {
			return nil, true, status.Error(codes.FailedPrecondition, "No SuperNode found with the given public key.")
		}
		if iv := fields.double[2]; iv < minHeartbeat || iv > maxHeartbeat {
			return nil, true, status.Error(codes.InvalidArgument, "Invalid heartbeat interval")
		}
		return protowire.AppendVarint(protowire.AppendTag(nil, 1, protowire.VarintType), id), true, nil
	case "DeactivateNode", "UnregisterNode":
		// uint64 node_id = 1; the others carry Node node = 1 {node_id = 1}.
	default:
		node, err := topFields(fields.bytes[1])
		if err != nil {
			return nil, true, status.Error(codes.Internal, "the request does not decode")
		}
		fields.varint[1] = node.varint[1]
	}
	if id, found := r.active(key); !found || id != fields.varint[1] {
		return nil, true, status.Error(codes.Unauthenticated, "Invalid node ID")
	}
	return nil, false, nil
}

// active returns the node id of a registered, not unregistered key.
func (r *nodeRegistry) active(pem []byte) (uint64, bool) {
	id, ok := r.byPEM[string(pem)]
	if !ok || r.nodes[id].UnregisteredAt != nil {
		return 0, false
	}
	return id, true
}

// fields are a message's top-level scalar fields by number (the last of
// each, as protobuf reads them).
type fields struct {
	varint map[protowire.Number]uint64
	double map[protowire.Number]float64
	bytes  map[protowire.Number][]byte
}

func topFields(b []byte) (fields, error) {
	f := fields{varint: map[protowire.Number]uint64{}, double: map[protowire.Number]float64{}, bytes: map[protowire.Number][]byte{}}
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return f, protowire.ParseError(n)
		}
		b = b[n:]
		switch typ {
		case protowire.VarintType:
			v, m := protowire.ConsumeVarint(b)
			if m < 0 {
				return f, protowire.ParseError(m)
			}
			f.varint[num], n = v, m
		case protowire.Fixed64Type:
			v, m := protowire.ConsumeFixed64(b)
			if m < 0 {
				return f, protowire.ParseError(m)
			}
			f.double[num], n = math.Float64frombits(v), m
		case protowire.BytesType:
			v, m := protowire.ConsumeBytes(b)
			if m < 0 {
				return f, protowire.ParseError(m)
			}
			f.bytes[num], n = v, m
		default:
			n = protowire.ConsumeFieldValue(num, typ, b)
			if n < 0 {
				return f, protowire.ParseError(n)
			}
		}
		b = b[n:]
	}
	return f, nil
}
