package flwrpb_test

import (
	"testing"

	"github.com/nodekeys/nodekeys/flwr"
	"github.com/nodekeys/nodekeys/internal/flwrpb"
)

// The stub's service and methods are Flower's, as the table names them: a
// misspelt rpc in control.proto would call a method no SuperLink has.
func TestStubMethodsAreFlowers(t *testing.T) {
	d := flwrpb.Control_ServiceDesc
	if d.ServiceName != flwr.ControlService {
		t.Fatalf("service %q, Flower's is %q", d.ServiceName, flwr.ControlService)
	}
	if len(d.Methods) == 0 || len(d.Streams) != 0 {
		t.Fatalf("%d unary methods and %d streams", len(d.Methods), len(d.Streams))
	}
	for _, m := range d.Methods {
		e, ok := flwr.ControlMethod(m.MethodName)
		if !ok || e.ServerStreaming {
			t.Errorf("%s is not a unary Control method of Flower's", m.MethodName)
		}
	}
}
