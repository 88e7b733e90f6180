package gateway

import (
	"context"
	"errors"
	"io"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/nodekeys/nodekeys/flwr"
)

// streamDesc lets one handler forward any method: unary calls are streams
// of one message each way.
var streamDesc = &grpc.StreamDesc{ServerStreams: true, ClientStreams: true}

// hopHeaders are metadata keys that belong to one connection, not to the
// call, and are set anew by the gateway's client.
func hopHeader(k string) bool {
	return strings.HasPrefix(k, ":") || k == "content-type" || k == "user-agent" || k == "te" ||
		strings.HasPrefix(k, "grpc-")
}

// outgoing returns the metadata to send upstream: the call's own, less the
// connection's headers, with any extra pairs set in place of theirs.
func outgoing(in metadata.MD, set metadata.MD) metadata.MD {
	out := make(metadata.MD, len(in))
	for k, v := range in {
		if hopHeader(k) {
			continue
		}
		out[k] = v
	}
	for k, v := range set {
		out[k] = v
	}
	return out
}

// relay says how forward changes a call; the zero relay changes nothing.
type relay struct {
	// first is a request message the gateway has already read from the
	// client (to check it), sent upstream before the rest.
	first *frame
	// edit, if set, sees and may change each response message before the
	// client does; an error ends the call with that status.
	edit func(*frame) error
}

// forward relays one call between the SuperNode or CLI (ss) and the
// upstream connection, in both directions, until either side ends it. It
// returns the status to end ss with.
func forward(ctx context.Context, ss grpc.ServerStream, conn *grpc.ClientConn, method string, md metadata.MD, r relay) error {
	if m, ok := flwr.Lookup(method); ok && !m.ServerStreaming {
		return forwardUnary(ctx, ss, conn, method, md, r)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	cs, err := conn.NewStream(metadata.NewOutgoingContext(ctx, md), streamDesc, method, grpc.ForceCodec(rawCodec{}))
	if err != nil {
		return err
	}
	// Client to upstream. A client that goes away cancels the upstream
	// call; one that has sent all closes the upstream's send side.
	go func() {
		if r.first != nil {
			if err := cs.SendMsg(r.first); err != nil {
				return
			}
		}
		for {
			f := &frame{}
			if err := ss.RecvMsg(f); err != nil {
				if errors.Is(err, io.EOF) {
					cs.CloseSend()
				} else {
					cancel()
				}
				return
			}
			if err := cs.SendMsg(f); err != nil {
				return // the upstream ended the call; RecvMsg below has its status
			}
		}
	}()
	// Upstream to client: headers as soon as they come, then messages,
	// then the status and trailers.
	if h, err := cs.Header(); err == nil && len(h) > 0 {
		if err := ss.SendHeader(h); err != nil {
			return err
		}
	}
	for {
		f := &frame{}
		if err := cs.RecvMsg(f); err != nil {
			ss.SetTrailer(cs.Trailer())
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		if r.edit != nil {
			if err := r.edit(f); err != nil {
				return err
			}
		}
		if err := ss.SendMsg(f); err != nil {
			return err
		}
	}
}

// forwardUnary is forward for a method Flower declares unary (every
// method of the table but the server-streaming ones): one request, one
// answer. The request goes upstream with its end of stream, and the
// answer's headers go to the client with its message, where forward
// writes each in a frame and a flush of its own. Only the first request
// goes upstream: a client that sends more gets the answer to that one.
func forwardUnary(ctx context.Context, ss grpc.ServerStream, conn *grpc.ClientConn, method string, md metadata.MD, r relay) error {
	req := r.first
	if req == nil {
		req = &frame{}
		if err := recvRequest(ss, req); err != nil {
			return err
		}
	}
	var header, trailer metadata.MD
	resp := &frame{}
	err := conn.Invoke(metadata.NewOutgoingContext(ctx, md), method, req, resp,
		grpc.ForceCodec(rawCodec{}), grpc.Header(&header), grpc.Trailer(&trailer))
	if len(header) > 0 {
		if err := ss.SetHeader(header); err != nil {
			return err
		}
	}
	if err != nil {
		ss.SetTrailer(trailer)
		return err
	}
	if r.edit != nil {
		if err := r.edit(resp); err != nil {
			return err // the gateway's own status, without the upstream's trailers
		}
	}
	ss.SetTrailer(trailer)
	return ss.SendMsg(resp)
}

// errNoRequest ends a unary call whose client closed its side before
// sending the request, with Internal, the code gRPC's servers answer it
// with ("cardinality violation"). It is counted as refused, not as an
// upstream failure.
var errNoRequest = status.Error(codes.Internal, "the call ended without its request, and the method is unary")

// recvRequest reads a unary call's request into f. It ends with the
// stream's context, which on the Fleet server ends at max_stream_age: a
// client that never sends its request does not hold the call past it.
func recvRequest(ss grpc.ServerStream, f *frame) error {
	err := ss.RecvMsg(f)
	if errors.Is(err, io.EOF) {
		return errNoRequest
	}
	return err
}

// transportFailure reports whether err means the upstream was not reached
// or the call broke in transit, as opposed to a status the upstream sent.
func transportFailure(err error) (codes.Code, bool) {
	st := status.Convert(err)
	switch st.Code() {
	case codes.Unavailable, codes.Internal, codes.Unknown:
		return st.Code(), true
	}
	return st.Code(), false
}
