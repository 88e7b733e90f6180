package sign

import "context"

// PerRPCCredentials returns gRPC call credentials that add Flower's three
// authentication headers to every call, signing a fresh timestamp each
// time. They require transport security, as Flower's node authentication
// does:
//
//	grpc.NewClient(addr,
//		grpc.WithTransportCredentials(credentials.NewTLS(tlsConfig)),
//		grpc.WithPerRPCCredentials(signer.PerRPCCredentials()))
//
// The result is a credentials.PerRPCCredentials of grpc-go by its methods,
// so that this package, and package verify that reads its Headers, do not
// import gRPC.
func (s *Signer) PerRPCCredentials() CallCredentials { return CallCredentials{s} }

// CallCredentials are the gRPC call credentials of a Signer.
type CallCredentials struct{ s *Signer }

// GetRequestMetadata signs the current time. The -bin values are raw bytes:
// gRPC base64-encodes them on the wire.
func (c CallCredentials) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
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
func (CallCredentials) RequireTransportSecurity() bool { return true }
