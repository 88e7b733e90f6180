// Package control is a client of a Flower SuperLink's Control API (or of a
// nodekeys gateway in front of one), as the flwr CLI is: Dial connects
// with TLS or in plaintext and sends a machine token or an account login's
// tokens with every call; Login runs the device login; ReadLogin reads the
// tokens nodekeys login writes and those the flwr CLI stores itself.
//
// Errors name the fields of Options, never command-line flags: the
// program that fills Options owns its flags and hints.
package control

import (
	"context"
	"errors"
	"net"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/nodekeys/nodekeys/flwr"
	"github.com/nodekeys/nodekeys/internal/flwrpb"
	"github.com/nodekeys/nodekeys/internal/safefile"
	"github.com/nodekeys/nodekeys/internal/tlsconf"
	"github.com/nodekeys/nodekeys/tokens"
)

// The metadata keys of an account login's tokens, as the flwr CLI sends
// them.
const (
	HeaderAccessToken  = flwr.HeaderAccessToken
	HeaderRefreshToken = flwr.HeaderRefreshToken
)

// Options say how to reach a Control API and who calls it.
type Options struct {
	// Address is the Control API's HOST:PORT (Flower's port is 9093).
	Address string
	// RootCertificates is the CA certificate file the server's certificate
	// chains to: the connection uses TLS. Exactly one of RootCertificates
	// and Insecure is set.
	RootCertificates string
	// Insecure speaks plaintext, to a SuperLink started with --insecure.
	Insecure bool
	// Token is a bearer token (a gateway's machine token), sent with every
	// call over TLS only; TokenFile, if set, holds it and wins over Token.
	Token, TokenFile string
	// LoginFile holds the tokens of an account login: nodekeys login's file
	// or the flwr CLI's own store (see ReadLogin). Tokens the server
	// refreshes are written back to it.
	LoginFile string
}

// The errors of Options that cannot work.
var (
	ErrNoTransport    = errors.New("control: set RootCertificates (TLS) or Insecure")
	ErrTLSAndInsecure = errors.New("control: RootCertificates and Insecure contradict each other")
	ErrTokenNeedsTLS  = errors.New("control: a bearer token is sent over TLS only, not with Insecure")
	// ErrTwoCredentials: a login file and a token (Token or TokenFile); a
	// call carries one credential.
	ErrTwoCredentials = errors.New("control: a login file and a bearer token do not go together")
	// ErrNoPort: an Address that is not HOST:PORT, which gRPC would dial
	// on port 443.
	ErrNoPort = errors.New("control: the address is not HOST:PORT")
)

// CallError is a call the Control API answered with an error status. It
// reads "METHOD: MESSAGE (CODE)", where gRPC's own text is "rpc error:
// code = CODE desc = MESSAGE"; status.Code and status.FromError see the
// status as it came. A connection made by Dial returns it for every call.
type CallError struct {
	Method string // the method's name alone: "ListNodes"
	Status *status.Status
}

func (e *CallError) Error() string {
	if e.Status.Message() == "" {
		return e.Method + ": " + e.Status.Code().String()
	}
	return e.Method + ": " + e.Status.Message() + " (" + e.Status.Code().String() + ")"
}

// GRPCStatus is the status the server sent.
func (e *CallError) GRPCStatus() *status.Status { return e.Status }

// callErrors makes a call's error status a *CallError.
func callErrors(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	err := invoker(ctx, method, req, reply, cc, opts...)
	if st, ok := status.FromError(err); ok && err != nil {
		return &CallError{Method: method[strings.LastIndexByte(method, '/')+1:], Status: st}
	}
	return err
}

// maxTokenFile bounds a token file.
const maxTokenFile = 64 << 10

// LoginError is an Options.LoginFile that cannot be used.
type LoginError struct {
	File string
	Err  error
}

func (e *LoginError) Error() string { return e.Err.Error() }
func (e *LoginError) Unwrap() error { return e.Err }

// Dial returns a client connection to the Control API as o says. Like
// grpc.NewClient it does not connect yet: see Reach.
func Dial(o Options) (*grpc.ClientConn, error) {
	if _, port, err := net.SplitHostPort(o.Address); err != nil || port == "" {
		return nil, ErrNoPort
	}
	var creds credentials.TransportCredentials
	switch {
	case o.LoginFile != "" && (o.Token != "" || o.TokenFile != ""):
		return nil, ErrTwoCredentials
	case o.RootCertificates != "" && o.Insecure:
		return nil, ErrTLSAndInsecure
	case o.RootCertificates != "":
		conf, err := tlsconf.Client(o.RootCertificates, "")
		if err != nil {
			return nil, err
		}
		creds = credentials.NewTLS(conf)
	case o.Insecure:
		creds = insecure.NewCredentials()
	default:
		return nil, ErrNoTransport
	}
	opts := []grpc.DialOption{grpc.WithTransportCredentials(creds), grpc.WithChainUnaryInterceptor(callErrors)}
	token := o.Token
	if o.TokenFile != "" {
		b, err := safefile.ReadRegular(o.TokenFile, maxTokenFile)
		if err != nil {
			return nil, err
		}
		token = strings.TrimSpace(string(b))
	}
	if token != "" {
		if o.Insecure {
			return nil, ErrTokenNeedsTLS
		}
		opts = append(opts, grpc.WithPerRPCCredentials(tokens.Static(token)))
	}
	if o.LoginFile != "" {
		l, err := ReadLogin(o.LoginFile, o.Address)
		if err != nil {
			return nil, &LoginError{File: o.LoginFile, Err: err}
		}
		// Tokens the server refreshes are kept, in the file too.
		c := NewCredentials(&l.Tokens, l, !o.Insecure)
		opts = append(opts, grpc.WithPerRPCCredentials(c), grpc.WithChainUnaryInterceptor(c.UnaryInterceptor()))
	}
	return grpc.NewClient(o.Address, opts...)
}

// UnreachableError says a Control API could not be connected to: nothing
// answers at the address, or the TLS handshake failed.
type UnreachableError struct {
	Address string
	// Cause is gRPC's last connection error, "" when ctx ended first.
	Cause string
}

func (e *UnreachableError) Error() string {
	if e.Cause == "" {
		return "cannot reach " + e.Address
	}
	return "cannot reach " + e.Address + ": " + e.Cause
}

// Reach connects conn and waits until it is ready. It fails at the first
// failed attempt, with an *UnreachableError, so that a program about to
// make many calls says once that the server cannot be reached instead of
// once per call.
func Reach(ctx context.Context, conn *grpc.ClientConn) error {
	conn.Connect()
	for {
		s := conn.GetState()
		switch s {
		case connectivity.Ready:
			return nil
		case connectivity.TransientFailure:
			return &UnreachableError{Address: conn.Target(), Cause: lastError(ctx, conn)}
		}
		if !conn.WaitForStateChange(ctx, s) {
			return &UnreachableError{Address: conn.Target()}
		}
	}
}

// lastError is the connection error a call on a failed conn gets: a call
// without WaitForReady fails at once with it, before anything is sent.
func lastError(ctx context.Context, conn *grpc.ClientConn) string {
	_, err := flwrpb.NewControlClient(conn).ListNodes(ctx, &flwrpb.ListNodesRequest{})
	if err == nil {
		return ""
	}
	msg := status.Convert(err).Message()
	// "connection error: desc = "transport: Error while dialing: dial tcp
	// 127.0.0.1:1: connect: connection refused"": keep the last part.
	if _, rest, ok := strings.Cut(msg, "Error while dialing: "); ok {
		msg = rest
		if _, r, ok := strings.Cut(msg, conn.Target()+": "); ok {
			msg = r
		}
	}
	msg = strings.TrimPrefix(msg, "connection error: desc = ")
	return strings.Trim(msg, `"`)
}
