package gateway

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/nodekeys/nodekeys/authz"
	"github.com/nodekeys/nodekeys/gateway/owners"
	"github.com/nodekeys/nodekeys/internal/flwrpb"
	"github.com/nodekeys/nodekeys/oidcauth"
)

// Flower's owner when its SuperLink runs without account auth.
const (
	noOwnerAID  = "<id:none>"
	noOwnerName = "none"
)

// ownerOf is the state record of a call's account: its principal.
func ownerOf(a *oidcauth.Account) owners.Owner {
	name := a.Name
	if name == "" {
		name = a.Email
	}
	return owners.Owner{Kind: a.Principal.Kind, Subject: a.Principal.Subject, Name: name, At: time.Now().UTC().Truncate(time.Millisecond)}
}

// errStore is the status of a call whose owners cannot be read or written:
// ownership is never guessed.
func (g *Gateway) errStore(method string, err error) error {
	g.m.stateErrors.Inc()
	g.log.Error("state store", "method", method, "error", err)
	return status.Error(codes.Unavailable, "the gateway cannot reach its state store; try again later")
}

// authorized forwards a Control call the policy lets acct make, keeping
// every account to its own runs and nodes unless d.SeeAll: calls about one
// run or node are checked before they go upstream, lists are filtered on
// the way back, and new runs and nodes are recorded as acct's.
func (g *Gateway) authorized(ctx context.Context, ss grpc.ServerStream, method string, up metadata.MD, acct *oidcauth.Account, d authz.Decision) error {
	short := strings.TrimPrefix(method, "/"+authz.ControlService+"/")
	var r relay
	switch short {
	case "StartRun":
		r.edit = g.record(ctx, method, owners.Runs, acct, func(b []byte) (uint64, bool, error) {
			m := &flwrpb.StartRunResponse{}
			err := proto.Unmarshal(b, m)
			return m.GetRunId(), m.RunId != nil, err
		})
	case "RegisterNode":
		r.edit = g.record(ctx, method, owners.Nodes, acct, func(b []byte) (uint64, bool, error) {
			m := &flwrpb.RegisterNodeResponse{}
			err := proto.Unmarshal(b, m)
			return m.GetNodeId(), m.NodeId != nil, err
		})
	case "StopRun", "StreamLogs", "PullArtifacts", "UnregisterNode":
		kind, what := owners.Runs, "run"
		if short == "UnregisterNode" {
			kind, what = owners.Nodes, "SuperNode"
		}
		f := &frame{}
		if err := recvRequest(ss, f); err != nil {
			return err
		}
		// Each of these requests has the run or node id as field 1.
		m := &flwrpb.StopRunRequest{}
		if err := proto.Unmarshal(f.b, m); err != nil {
			return status.Error(codes.InvalidArgument, "the request does not decode")
		}
		if !d.SeeAll {
			owners, err := g.store.Owners(ctx, kind, []uint64{m.RunId})
			if err != nil {
				return g.errStore(method, err)
			}
			if o, ok := owners[m.RunId]; !ok || !o.Matches(acct.Principal) {
				g.m.refusals.WithLabelValues("owner").Inc()
				g.log.Warn("refused a call on another account's "+what, append([]any{"method", method, "id", strconv.FormatUint(m.RunId, 10)}, accountAttrs(acct)...)...)
				return status.Errorf(codes.PermissionDenied, "%s %d was not started or registered by this account", what, m.RunId)
			}
		}
		r.first = f
	case "ListRuns":
		r.edit = g.filterRuns(ctx, method, acct, d)
	case "ListNodes":
		r.edit = g.filterNodes(ctx, method, acct, d)
	case "ListFederations", "ShowFederation", "CreateFederation":
		r.edit = g.filterFederationsResponse(ctx, method, acct, d)
	case "ListInvitations":
		r.edit = g.filterInvitations(acct, d)
	}
	return forward(ctx, ss, g.controlUp, method, up, r)
}

// record returns an edit that records acct as the owner of the id in a
// response, before the response reaches the client.
func (g *Gateway) record(ctx context.Context, method string, kind owners.Kind, acct *oidcauth.Account, id func([]byte) (uint64, bool, error)) func(*frame) error {
	return func(f *frame) error {
		n, ok, err := id(f.b)
		if err != nil || !ok {
			return nil // nothing to record; the client gets Flower's answer
		}
		err = g.store.SetOwner(ctx, kind, n, ownerOf(acct))
		if err != nil {
			g.m.stateErrors.Inc()
			g.log.Error("cannot record an owner: only an admin can reach it", "method", method, "id", strconv.FormatUint(n, 10), "error", err)
			if errors.Is(err, owners.ErrOwned) {
				return status.Errorf(codes.Internal, "%d is already recorded for another account", n)
			}
			return status.Errorf(codes.Unavailable, "done upstream (id %d), but the gateway could not record you as its owner; ask an admin", n)
		}
		// record, not kind: accountAttrs names the owner's kind. Ids are
		// strings: a JSON reader rounds a number above 2^53.
		g.log.Info("recorded an owner", append([]any{"record", string(kind), "id", strconv.FormatUint(n, 10)}, accountAttrs(acct)...)...)
		return nil
	}
}

// filterRuns keeps the runs acct may see in a ListRuns response, and
// shows the recorded owner where the SuperLink has none.
func (g *Gateway) filterRuns(ctx context.Context, method string, acct *oidcauth.Account, d authz.Decision) func(*frame) error {
	return func(f *frame) error {
		m := &flwrpb.ListRunsResponse{}
		if err := proto.Unmarshal(f.b, m); err != nil {
			return status.Error(codes.Internal, "the SuperLink's ListRuns answer does not decode")
		}
		ids := make([]uint64, 0, len(m.RunDict))
		for id := range m.RunDict {
			ids = append(ids, id)
		}
		owners, err := g.store.Owners(ctx, owners.Runs, ids)
		if err != nil {
			return g.errStore(method, err)
		}
		for id, run := range m.RunDict {
			o, ok := owners[id]
			if !d.SeeAll && (!ok || !o.Matches(acct.Principal)) {
				delete(m.RunDict, id)
				continue
			}
			if ok && run != nil && (run.FlwrAid == "" || run.FlwrAid == noOwnerAID) {
				run.FlwrAid = o.String()
			}
		}
		return remarshal(f, m)
	}
}

// visibleRuns returns the runs acct may see, with the recorded owner
// shown where the SuperLink has none.
func (g *Gateway) visibleRuns(ctx context.Context, method string, acct *oidcauth.Account, d authz.Decision, runs []*flwrpb.Run) ([]*flwrpb.Run, error) {
	ids := make([]uint64, len(runs))
	for i, r := range runs {
		ids[i] = r.GetRunId()
	}
	owners, err := g.store.Owners(ctx, owners.Runs, ids)
	if err != nil {
		return nil, g.errStore(method, err)
	}
	kept := runs[:0]
	for _, run := range runs {
		o, ok := owners[run.GetRunId()]
		if !d.SeeAll && (!ok || !o.Matches(acct.Principal)) {
			continue
		}
		if ok && (run.FlwrAid == "" || run.FlwrAid == noOwnerAID) {
			run.FlwrAid = o.String()
		}
		kept = append(kept, run)
	}
	return kept, nil
}

// filterNodes keeps the SuperNodes acct may see in a ListNodes response.
func (g *Gateway) filterNodes(ctx context.Context, method string, acct *oidcauth.Account, d authz.Decision) func(*frame) error {
	return func(f *frame) error {
		m := &flwrpb.ListNodesResponse{}
		if err := proto.Unmarshal(f.b, m); err != nil {
			return status.Error(codes.Internal, "the SuperLink's ListNodes answer does not decode")
		}
		kept, err := g.visibleNodes(ctx, method, acct, d, m.NodesInfo)
		if err != nil {
			return err
		}
		m.NodesInfo = kept
		return remarshal(f, m)
	}
}

// visibleNodes returns the SuperNodes acct may see, with the recorded
// owner shown where the SuperLink has none.
func (g *Gateway) visibleNodes(ctx context.Context, method string, acct *oidcauth.Account, d authz.Decision, nodes []*flwrpb.NodeInfo) ([]*flwrpb.NodeInfo, error) {
	ids := make([]uint64, len(nodes))
	for i, n := range nodes {
		ids[i] = n.GetNodeId()
	}
	owners, err := g.store.Owners(ctx, owners.Nodes, ids)
	if err != nil {
		return nil, g.errStore(method, err)
	}
	kept := nodes[:0]
	for _, n := range nodes {
		o, ok := owners[n.GetNodeId()]
		if !d.SeeAll && (!ok || !o.Matches(acct.Principal)) {
			continue
		}
		if ok && (n.OwnerAid == "" || n.OwnerAid == noOwnerAID) {
			n.OwnerAid, n.OwnerName = o.String(), o.Name
		}
		kept = append(kept, n)
	}
	return kept, nil
}

// remarshal encodes m into f. Fields the minimal types do not declare were
// kept as unknown fields and go out as they came.
func remarshal(f *frame, m proto.Message) error {
	b, err := proto.Marshal(m)
	if err != nil {
		return fmt.Errorf("gateway: %w", err)
	}
	f.b = b
	return nil
}
