package standin

import (
	"strconv"
	"strings"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/nodekeys/nodekeys/internal/flwrpb"
)

// runRegistry keeps runs as a SuperLink without account auth does: each
// StartRun makes a run with a random id and owner "<id:none>"; ListRuns
// lists them (or the one asked for), StopRun stops one, StreamLogs and
// PullArtifacts answer for one; an unknown id is NotFound, "Run ID not
// found", as Flower says it. Unlike open-source Flower, which has no
// artifact provider (PullArtifacts: Unimplemented), the stand-in answers
// PullArtifacts with a URL, as a SuperLink with one does. A Run carries,
// besides run_id and flwr_aid, a fab_hash (field 5) that the declared
// types do not know, so that a proxy that drops unknown fields is caught.
type runRegistry struct {
	mu   sync.Mutex
	runs map[uint64]*flwrpb.Run
	stop map[uint64]bool
}

func newRunRegistry() *runRegistry {
	return &runRegistry{runs: map[uint64]*flwrpb.Run{}, stop: map[uint64]bool{}}
}

// runNotFound is Flower's message for a run id it does not know (the flwr
// CLI matches it exactly).
const runNotFound = "Run ID not found"

// textCommand reports whether a request is one of the stand-in's text
// commands rather than a Flower message.
func textCommand(req []byte) bool {
	for _, p := range []string{"echo:", "stream:", "sleep:", "fail"} {
		if strings.HasPrefix(string(req), p) {
			return true
		}
	}
	return false
}

// FabHash is the unknown field each stand-in run carries.
func FabHash(id uint64) string { return "fab-hash-of-run-" + strconv.FormatUint(id, 10) }

func (r *runRegistry) handle(method string, req []byte) (out []byte, ok bool, err error) {
	if textCommand(req) {
		return nil, false, nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	id := &flwrpb.StopRunRequest{} // run_id is field 1 of each request below
	switch method {
	case "/flwr.proto.Control/StartRun":
		n := newNodeID()
		run := &flwrpb.Run{RunId: n, FlwrAid: "<id:none>"}
		b, _ := proto.Marshal(run)
		b = protowire.AppendTag(b, 5, protowire.BytesType)
		b = protowire.AppendString(b, FabHash(n))
		stored := &flwrpb.Run{}
		proto.Unmarshal(b, stored) // fab_hash kept as an unknown field
		r.runs[n] = stored
		out, err = proto.Marshal(&flwrpb.StartRunResponse{RunId: &n})
		return out, true, err
	case "/flwr.proto.Control/ListRuns":
		in := &flwrpb.ListRunsRequest{}
		if err := proto.Unmarshal(req, in); err != nil {
			return nil, true, status.Error(codes.InvalidArgument, err.Error())
		}
		if in.RunId != nil && r.runs[*in.RunId] == nil {
			return nil, true, status.Error(codes.NotFound, runNotFound)
		}
		resp := &flwrpb.ListRunsResponse{RunDict: map[uint64]*flwrpb.Run{}, Now: "now"}
		for n, run := range r.runs {
			if in.RunId == nil || *in.RunId == n {
				resp.RunDict[n] = proto.Clone(run).(*flwrpb.Run)
			}
		}
		out, err = proto.Marshal(resp)
		return out, true, err
	case "/flwr.proto.Control/StopRun", "/flwr.proto.Control/PullArtifacts":
		if err := proto.Unmarshal(req, id); err != nil {
			return nil, true, status.Error(codes.InvalidArgument, err.Error())
		}
		if _, ok := r.runs[id.RunId]; !ok {
			return nil, true, status.Error(codes.NotFound, runNotFound)
		}
		if method == "/flwr.proto.Control/StopRun" {
			r.stop[id.RunId] = true
			return protowire.AppendVarint(protowire.AppendTag(nil, 1, protowire.VarintType), 1), true, nil
		}
		return protowire.AppendString(protowire.AppendTag(nil, 1, protowire.BytesType), "https://artifacts.example/run"), true, nil
	}
	return nil, false, nil
}

// Stopped reports whether run id was stopped.
func (s *Server) Stopped(id uint64) bool {
	s.runs.mu.Lock()
	defer s.runs.mu.Unlock()
	return s.runs.stop[id]
}

// streamLogs answers StreamLogs for a run: three log lines, or NotFound.
func (r *runRegistry) streamLogs(ss grpc.ServerStream, req []byte) (bool, error) {
	if textCommand(req) {
		return false, nil
	}
	in := &flwrpb.StreamLogsRequest{}
	if err := proto.Unmarshal(req, in); err != nil {
		return true, status.Error(codes.InvalidArgument, err.Error())
	}
	r.mu.Lock()
	_, ok := r.runs[in.RunId]
	r.mu.Unlock()
	if !ok {
		return true, status.Error(codes.NotFound, runNotFound)
	}
	for _, line := range []string{"log 1", "log 2", "log 3"} {
		out := protowire.AppendString(protowire.AppendTag(nil, 1, protowire.BytesType), line)
		if err := ss.SendMsg(&out); err != nil {
			return true, err
		}
	}
	return true, nil
}
