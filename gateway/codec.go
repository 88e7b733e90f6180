package gateway

import "fmt"

// frame is one gRPC message as it travels: bytes the gateway neither
// decodes nor changes.
type frame struct{ b []byte }

// rawCodec passes messages through as bytes. Its name is "proto" so that
// the content type sent upstream is the one Flower's server expects.
type rawCodec struct{}

func (rawCodec) Marshal(v any) ([]byte, error) {
	f, ok := v.(*frame)
	if !ok {
		return nil, fmt.Errorf("gateway: cannot marshal %T", v)
	}
	return f.b, nil
}

func (rawCodec) Unmarshal(data []byte, v any) error {
	f, ok := v.(*frame)
	if !ok {
		return fmt.Errorf("gateway: cannot unmarshal into %T", v)
	}
	// data belongs to gRPC's buffer pool once this returns.
	f.b = append(f.b[:0], data...)
	return nil
}

func (rawCodec) Name() string { return "proto" }
