package gateway

import (
	"context"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/nodekeys/nodekeys/authz"
	"github.com/nodekeys/nodekeys/flwr"
	"github.com/nodekeys/nodekeys/internal/flwrpb"
	"github.com/nodekeys/nodekeys/oidcauth"
)

// Federations (Flower 1.24 and later) carry runs, SuperNodes and members
// of every account: ListFederations, ShowFederation and CreateFederation
// answer with Federation messages, ListInvitations with invitations naming
// accounts. A caller who sees only its own gets each federation with its
// own runs and SuperNodes (as ListRuns and ListNodes), itself among the
// members, and the invitations it made or received; the fields of these
// messages the gateway does not know are dropped for such a caller, as a
// later Flower may put other accounts' data there.

// federationLayout is how a SuperLink encodes a Federation: Flower 1.26
// renumbered its fields (flwrpb.Federation; 1.24 and 1.25 send
// flwrpb.FederationV124).
type federationLayout int

const (
	layoutUnknown federationLayout = iota // flower_version unset: told from the message
	layoutV124
	layoutV126
)

// federationsRenumbered is the Flower version whose Federation message
// has the fields of flwrpb.Federation.
const federationsRenumbered = "1.26"

func layoutOf(version string) federationLayout {
	switch {
	case version == "":
		return layoutUnknown
	case (flwr.Method{Since: federationsRenumbered}).In(version):
		return layoutV126
	}
	return layoutV124
}

// filterFederationsResponse returns the edit of a response that holds
// federations, as bytes: ListFederations (repeated, field 1),
// ShowFederation and CreateFederation (field 1).
func (g *Gateway) filterFederationsResponse(ctx context.Context, method string, acct *oidcauth.Account, d authz.Decision) func(*frame) error {
	short := method[len(flwr.ControlService)+2:]
	return func(f *frame) error {
		// m is the response; feds, once m is decoded, its federations.
		var m proto.Message
		var feds func() []*[]byte
		switch short {
		case "ListFederations":
			r := &flwrpb.ListFederationsResponse{}
			m, feds = r, func() []*[]byte {
				out := make([]*[]byte, len(r.Federations))
				for i := range r.Federations {
					out[i] = &r.Federations[i]
				}
				return out
			}
		case "ShowFederation":
			r := &flwrpb.ShowFederationResponse{}
			m, feds = r, func() []*[]byte { return []*[]byte{&r.Federation} }
		default: // CreateFederation
			r := &flwrpb.CreateFederationResponse{}
			m, feds = r, func() []*[]byte { return []*[]byte{&r.Federation} }
		}
		if err := proto.Unmarshal(f.b, m); err != nil {
			return status.Errorf(codes.Internal, "the SuperLink's %s answer does not decode", short)
		}
		for _, b := range feds() {
			out, err := g.filterFederation(ctx, method, acct, d, *b)
			if err != nil {
				return err
			}
			*b = out
		}
		if !d.SeeAll {
			m.ProtoReflect().SetUnknown(nil)
		}
		return remarshal(f, m)
	}
}

// filterFederation returns the federation b as acct may see it. Without
// flower_version the layout is told from b: the one it decodes as, or
// Flower 1.26's when it decodes as both (then, for a caller who sees only
// its own, without the description, the one field of that layout that
// could carry a 1.25 run whole).
func (g *Gateway) filterFederation(ctx context.Context, method string, acct *oidcauth.Account, d authz.Decision, b []byte) ([]byte, error) {
	layout := layoutOf(g.cfg.FlowerVersion)
	v126, v124 := &flwrpb.Federation{}, &flwrpb.FederationV124{}
	fits126 := layout != layoutV124 && fits(b, v126)
	fits124 := layout != layoutV126 && fits(b, v124)
	if !fits126 && !fits124 {
		if d.SeeAll {
			return b, nil // nothing to keep from this caller; Flower's answer as it is
		}
		return nil, status.Errorf(codes.Internal, "the SuperLink's federation does not decode as Flower %s's; set flower_version", g.federationVersions())
	}
	var m proto.Message
	if fits126 {
		runs, err := g.visibleRuns(ctx, method, acct, d, v126.Runs)
		if err != nil {
			return nil, err
		}
		nodes, err := g.visibleNodes(ctx, method, acct, d, v126.Nodes)
		if err != nil {
			return nil, err
		}
		v126.Runs, v126.Nodes = runs, nodes
		if !d.SeeAll {
			var own []*flwrpb.Member
			for _, x := range v126.Members {
				if x.GetAccount().GetId() == acct.Principal.String() {
					own = append(own, x)
				}
			}
			v126.Members = own
			if fits124 {
				v126.Description = ""
			}
		}
		m = v126
	} else {
		runs, err := g.visibleRuns(ctx, method, acct, d, v124.Runs)
		if err != nil {
			return nil, err
		}
		nodes, err := g.visibleNodes(ctx, method, acct, d, v124.Nodes)
		if err != nil {
			return nil, err
		}
		v124.Runs, v124.Nodes = runs, nodes
		if !d.SeeAll {
			var own []string
			for _, id := range v124.MemberAids {
				if id == acct.Principal.String() {
					own = append(own, id)
				}
			}
			v124.MemberAids = own
		}
		m = v124
	}
	if !d.SeeAll {
		m.ProtoReflect().SetUnknown(nil)
	}
	return proto.Marshal(m)
}

// federationVersions names the Flower versions whose layout was tried.
func (g *Gateway) federationVersions() string {
	switch layoutOf(g.cfg.FlowerVersion) {
	case layoutV124:
		return "1.24 or 1.25"
	case layoutV126:
		return federationsRenumbered + " or later"
	}
	return "1.24 or later"
}

// fits reports whether b decodes as m with no field m lacks.
func fits(b []byte, m proto.Message) bool {
	return proto.Unmarshal(b, m) == nil && len(m.ProtoReflect().GetUnknown()) == 0
}

// filterInvitations returns the edit of a ListInvitations response: a
// caller who sees only its own keeps the invitations it made or received.
func (g *Gateway) filterInvitations(acct *oidcauth.Account, d authz.Decision) func(*frame) error {
	return func(f *frame) error {
		if d.SeeAll {
			return nil
		}
		m := &flwrpb.ListInvitationsResponse{}
		if err := proto.Unmarshal(f.b, m); err != nil {
			return status.Error(codes.Internal, "the SuperLink's ListInvitations answer does not decode")
		}
		me := acct.Principal.String()
		keep := func(in []*flwrpb.Invitation) []*flwrpb.Invitation {
			var out []*flwrpb.Invitation
			for _, x := range in {
				if x.GetInviter().GetId() == me || x.GetInvitee().GetId() == me {
					x.ProtoReflect().SetUnknown(nil)
					out = append(out, x)
				}
			}
			return out
		}
		m.CreatedInvitations, m.ReceivedInvitations = keep(m.CreatedInvitations), keep(m.ReceivedInvitations)
		m.ProtoReflect().SetUnknown(nil)
		return remarshal(f, m)
	}
}
