// Package standin is a stand-in for a Flower SuperLink's Fleet and Control
// APIs, for tests and benchmarks of what sits in front of one. Flower's
// SuperLink is Python and cannot run here; this server registers the
// flwr.proto.Fleet and flwr.proto.Control methods by name, keeps Flower's
// per-call rules for Fleet calls (the three flwr-* headers, the signature
// over the timestamp, the window; any key, as a SuperLink without an
// allowlist), and records what reaches it.
//
// The Control API's RegisterNode, UnregisterNode and ListNodes keep
// Flower's registration rules (see nodeRegistry), and StartRun, ListRuns,
// StopRun, StreamLogs and PullArtifacts keep runs (see runRegistry), with
// the statuses and messages of Flower 1.27's SuperLink; ListFederations
// and ShowFederation show the one federation of a SuperLink without
// account auth, holding them all (see federations). Past the signature
// check, Fleet calls are answered with their request (any key, any node
// id) unless WithNodeAuth asks for Flower's node rules. A
// request that starts with one of these text commands is answered as the
// command says instead:
//
//	"echo:..."    the request back (the default for any other bytes)
//	"stream:N"    N messages "log-1" ... "log-N" (server-streaming methods)
//	"sleep:MS"    the request back after MS milliseconds, or the deadline
//	"fail"        status NotFound with a detail, header and trailer
//
// Every response carries the header "standin-method" and the trailer
// "standin-trailer".
package standin

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/nodekeys/nodekeys/flwr"
	"github.com/nodekeys/nodekeys/verify"
	"github.com/nodekeys/nodekeys/verify/grpcauth"
)

// Version is the Flower version whose methods the stand-in serves.
const Version = "1.25"

// FleetMethods and ControlMethods are the unary methods of Flower Version
// (from the flwr table), ControlStreams its server-streaming Control
// methods.
var (
	FleetMethods, _                = split(flwr.FleetMethods(Version))
	ControlMethods, ControlStreams = split(flwr.ControlMethods(Version))
)

// split returns the names of the unary and of the server-streaming
// methods of ms.
func split(ms []flwr.Method) (unary, streams []string) {
	for _, m := range ms {
		if m.ServerStreaming {
			streams = append(streams, m.Name)
		} else {
			unary = append(unary, m.Name)
		}
	}
	return unary, streams
}

// Call is one call that reached the stand-in.
type Call struct {
	Method   string
	Metadata metadata.MD
	Request  []byte
}

// Server is a running stand-in.
type Server struct {
	Addr string
	grpc *grpc.Server
	v    *verify.Verifier

	mu    sync.Mutex
	calls []Call
	n     int
	keep  bool
	tls   *tls.Certificate
	nodes *nodeRegistry
	runs  *runRegistry
	// nodeAuth applies Flower's node rules to Fleet calls (WithNodeAuth).
	nodeAuth bool
	// fed127: federations in Flower 1.26's layout (Federations127).
	fed127 bool
}

// Option configures a Server.
type Option func(*Server)

// Forgetful keeps a count of calls but not the calls: for load.
func Forgetful() Option { return func(s *Server) { s.keep = false } }

// WithTLS serves over TLS with cert, as a SuperLink reached directly does.
func WithTLS(cert tls.Certificate) Option {
	return func(s *Server) { s.tls = &cert }
}

// Start serves the stand-in on ln (plaintext, as a SuperLink behind a
// gateway on loopback) until Stop.
func Start(ln net.Listener, opts ...Option) *Server {
	s := &Server{Addr: ln.Addr().String(), keep: true, v: verify.New(nil, verify.AnyKey(), verify.ExactPEM()), nodes: newNodeRegistry(), runs: newRunRegistry()}
	for _, o := range opts {
		o(s)
	}
	sopts := []grpc.ServerOption{grpc.ForceServerCodec(codec{})}
	if s.tls != nil {
		sopts = append(sopts, grpc.Creds(credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{*s.tls}})))
	}
	s.grpc = grpc.NewServer(sopts...)
	s.grpc.RegisterService(s.desc(flwr.FleetService, FleetMethods, nil), s)
	control, streams := ControlMethods, ControlStreams
	if s.fed127 {
		control, streams = split(flwr.ControlMethods("1.27"))
	}
	s.grpc.RegisterService(s.desc(flwr.ControlService, control, streams), s)
	go s.grpc.Serve(ln)
	return s
}

// Listen starts a stand-in on a free loopback port.
func Listen(opts ...Option) (*Server, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	return Start(ln, opts...), nil
}

// Stop ends the server at once.
func (s *Server) Stop() { s.grpc.Stop() }

// Calls returns the calls that reached the server so far.
func (s *Server) Calls() []Call {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Call(nil), s.calls...)
}

// Count returns how many calls reached the server.
func (s *Server) Count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.n
}

func (s *Server) record(method string, ctx context.Context, req []byte) {
	md, _ := metadata.FromIncomingContext(ctx)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.n++
	if s.keep {
		s.calls = append(s.calls, Call{Method: method, Metadata: md.Copy(), Request: append([]byte(nil), req...)})
	}
}

func (s *Server) desc(service string, unary, streams []string) *grpc.ServiceDesc {
	d := &grpc.ServiceDesc{ServiceName: service, HandlerType: (*any)(nil)}
	for _, m := range unary {
		full := "/" + service + "/" + m
		d.Methods = append(d.Methods, grpc.MethodDesc{MethodName: m,
			Handler: func(_ any, ctx context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
				var req []byte
				if err := dec(&req); err != nil {
					return nil, err
				}
				return s.unary(ctx, full, req)
			}})
	}
	for _, m := range streams {
		full := "/" + service + "/" + m
		d.Streams = append(d.Streams, grpc.StreamDesc{StreamName: m, ServerStreams: true,
			Handler: func(_ any, ss grpc.ServerStream) error { return s.stream(ss, full) }})
	}
	return d
}

// fleetCheck does a Flower SuperLink's per-call check of a Fleet call.
func (s *Server) fleetCheck(ctx context.Context, method string) error {
	if !strings.HasPrefix(method, flwr.FleetPrefix) {
		return nil
	}
	md, _ := metadata.FromIncomingContext(ctx)
	if _, _, err := grpcauth.Check(md, s.v.Verify); err != nil {
		return grpcauth.StatusOf(err).Err()
	}
	return nil
}

func (s *Server) unary(ctx context.Context, method string, req []byte) (any, error) {
	if err := s.fleetCheck(ctx, method); err != nil {
		return nil, err
	}
	s.record(method, ctx, req)
	grpc.SetHeader(ctx, metadata.Pairs("standin-method", method))
	grpc.SetTrailer(ctx, metadata.Pairs("standin-trailer", "done"))
	if s.nodeAuth && strings.HasPrefix(method, flwr.FleetPrefix) && !textCommand(req) {
		md, _ := metadata.FromIncomingContext(ctx)
		if out, ok, err := s.nodes.fleet(method, []byte(md.Get(flwr.HeaderPublicKey)[0]), req); ok {
			if err != nil {
				return nil, err
			}
			return &out, nil
		}
	}
	if out, ok, err := s.nodes.handle(ctx, method, req); ok {
		if err != nil {
			return nil, err
		}
		return &out, nil
	}
	if out, ok, err := s.runs.handle(method, req); ok {
		if err != nil {
			return nil, err
		}
		return &out, nil
	}
	if out, ok, err := s.federations(method, req); ok {
		if err != nil {
			return nil, err
		}
		return &out, nil
	}
	body := string(req)
	switch {
	case body == "fail":
		st, _ := status.New(codes.NotFound, "no such run").WithDetails(&errdetails.ErrorInfo{Reason: "RUN_NOT_FOUND", Domain: "flwr"})
		return nil, st.Err()
	case strings.HasPrefix(body, "sleep:"):
		ms, _ := strconv.Atoi(strings.TrimPrefix(body, "sleep:"))
		select {
		case <-time.After(time.Duration(ms) * time.Millisecond):
		case <-ctx.Done():
			return nil, status.FromContextError(ctx.Err()).Err()
		}
	}
	return &req, nil
}

func (s *Server) stream(ss grpc.ServerStream, method string) error {
	var req []byte
	if err := ss.RecvMsg(&req); err != nil {
		return err
	}
	s.record(method, ss.Context(), req)
	ss.SetHeader(metadata.Pairs("standin-method", method))
	ss.SetTrailer(metadata.Pairs("standin-trailer", "done"))
	if ok, err := s.runs.streamLogs(ss, req); ok {
		return err
	}
	n := 3
	if v, ok := strings.CutPrefix(string(req), "stream:"); ok {
		n, _ = strconv.Atoi(v)
	}
	for i := 1; i <= n; i++ {
		out := []byte(fmt.Sprintf("log-%d", i))
		if err := ss.SendMsg(&out); err != nil {
			return err
		}
	}
	return nil
}

// codec passes messages as *[]byte.
type codec struct{}

func (codec) Marshal(v any) ([]byte, error) {
	b, ok := v.(*[]byte)
	if !ok {
		return nil, fmt.Errorf("standin: cannot marshal %T", v)
	}
	return *b, nil
}

func (codec) Unmarshal(data []byte, v any) error {
	b, ok := v.(*[]byte)
	if !ok {
		return fmt.Errorf("standin: cannot unmarshal into %T", v)
	}
	*b = append((*b)[:0], data...)
	return nil
}

func (codec) Name() string { return "proto" }

// Codec is the client-side codec for calling through raw bytes: pass
// grpc.ForceCodec(standin.Codec()) and *[]byte messages.
func Codec() interface {
	Marshal(any) ([]byte, error)
	Unmarshal([]byte, any) error
	Name() string
} {
	return codec{}
}
