package standin

import (
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/nodekeys/nodekeys/internal/flwrpb"
)

// The one federation of a SuperLink without account auth, and its one
// member (Flower's NoOpFederationManager).
const (
	Federation            = "@none/default"
	federationDescription = "A federation for testing and development purposes."
	noAccountID           = "<id:none>"
	noAccountName         = "none"
)

// Federations127 serves the Control methods of Flower 1.27 (those it adds
// echo, as any method without a rule here), and makes ListFederations and
// ShowFederation answer as Flower 1.26 and later do (flwrpb.Federation,
// with a description and members) rather than as the stand-in's Version,
// 1.25 (flwrpb.FederationV124).
func Federations127() Option { return func(s *Server) { s.fed127 = true } }

// federations serves ListFederations and ShowFederation as an open-source
// SuperLink does: one federation, whose only member is the account every
// call has without account auth, holding every SuperNode and run. ok is
// false for any other method or a text command.
func (s *Server) federations(method string, req []byte) (out []byte, ok bool, err error) {
	if textCommand(req) {
		return nil, false, nil
	}
	switch method {
	case "/flwr.proto.Control/ListFederations":
		var f proto.Message = &flwrpb.FederationV124{Name: Federation}
		if s.fed127 {
			f = &flwrpb.Federation{Name: Federation, Description: federationDescription}
		}
		b, err := proto.Marshal(f)
		if err != nil {
			return nil, true, err
		}
		out, err = proto.Marshal(&flwrpb.ListFederationsResponse{Federations: [][]byte{b}})
		return out, true, err
	case "/flwr.proto.Control/ShowFederation":
		in := &flwrpb.ShowFederationRequest{}
		if err := proto.Unmarshal(req, in); err != nil {
			return nil, true, status.Error(codes.InvalidArgument, err.Error())
		}
		if in.FederationName != Federation {
			return nil, true, status.Errorf(codes.FailedPrecondition, "Federation '%s' does not exist or you are not a member of it.", in.FederationName)
		}
		nodes := s.nodes.list().(*flwrpb.ListNodesResponse).NodesInfo
		var runs []*flwrpb.Run
		s.runs.mu.Lock()
		for _, r := range s.runs.runs {
			runs = append(runs, proto.Clone(r).(*flwrpb.Run))
		}
		s.runs.mu.Unlock()
		var f proto.Message = &flwrpb.FederationV124{Name: Federation, MemberAids: []string{noAccountID}, Nodes: nodes, Runs: runs}
		if s.fed127 {
			f = &flwrpb.Federation{Name: Federation, Description: federationDescription, Nodes: nodes, Runs: runs,
				Members: []*flwrpb.Member{{Account: &flwrpb.Account{Id: noAccountID, Name: noAccountName}, Role: "owner"}}}
		}
		b, err := proto.Marshal(f)
		if err != nil {
			return nil, true, err
		}
		out, err = proto.Marshal(&flwrpb.ShowFederationResponse{Federation: b, Now: "now"})
		return out, true, err
	}
	return nil, false, nil
}
