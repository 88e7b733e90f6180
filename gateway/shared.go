package gateway

import (
	"errors"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/nodekeys/nodekeys/gateway/shared"
)

// sharedLost counts and logs a Redis found without the shared state.
func (g *Gateway) sharedLost(revocations int) {
	g.m.sharedErrors.WithLabelValues("lost").Inc()
	g.log.Warn("the shared state was lost (Redis restarted without persistence, or was flushed): "+
		"this replica asserts its revocations again, checks tokens again once every replica has, "+
		"and answers headers signed before now UNAVAILABLE",
		"revocations", revocations)
}

// revokedUnknown is the answer to a token whose revocation cannot be
// checked in the shared state: UNAVAILABLE, with why.
func revokedUnknown(err error) error {
	if errors.Is(err, shared.ErrSettling) {
		return status.Error(codes.Unavailable, "the gateway's shared state is settling after Redis restarted or was unreachable; try again in a few seconds")
	}
	return status.Error(codes.Unavailable, "the gateway cannot reach its shared state to check the token; try again later")
}
