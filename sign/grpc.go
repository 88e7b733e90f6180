package sign

import (
	"context"

	"google.golang.org/grpc/credentials"
)

// PerRPCCredentials returns gRPC call credentials that add Flower's three
// authentication headers to every call, signing a fresh timestamp each
// time. They require transport security, as Flower's node authentication
// does:
//
//	grpc.NewClient(addr,
//		grpc.WithTransportCredentials(credentials.NewTLS(tlsConfig)),
//		grpc.WithPerRPCCredentials(signer.PerRPCCredentials()))
func (s *Signer) PerRPCCredentials() credentials.PerRPCCredentials { return rpcCreds{s} }

type rpcCreds struct{ s *Signer }

// GetRequestMetadata signs the current time. The -bin values are raw bytes:
// gRPC base64-encodes them on the wire.
func (c rpcCreds) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	h, err := c.s.Sign()
	if err != nil {
		return nil, err
	}
	return map[string]string{
		HeaderPublicKey: string(h.PublicKey),
		HeaderTimestamp: h.Timestamp,
		HeaderSignature: string(h.Signature),
	}, nil
}

// RequireTransportSecurity is true: the headers must not travel in clear.
func (rpcCreds) RequireTransportSecurity() bool { return true }
