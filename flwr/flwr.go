// Package flwr holds the facts of Flower's protocol that nodekeys relies on,
// in one place: the services and methods of the Fleet and Control APIs by
// the Flower version that has them, the metadata of node authentication
// (and its timestamp: FormatTimestamp, ParseTimestamp, and the accepted
// Window of each Flower version, WindowOf), the metadata of account login,
// and Flower's ports. The rest of nodekeys derives its
// lists (authorization defaults, metric labels, the gateway's routing, the
// stand-in SuperLink) from here, so that a method a new Flower adds is one
// edit.
//
// Entry points: Methods (the table), Lookup (a full method name to its
// entry), and ControlMethods and FleetMethods (the methods of one Flower
// version). docs/protocol.md states the same facts in prose, with where
// each was checked.
package flwr

import (
	"strconv"
	"strings"
)

// The gRPC services of a SuperLink.
const (
	FleetService   = "flwr.proto.Fleet"
	ControlService = "flwr.proto.Control"
)

// The metadata of node authentication (Flower 1.15.1 and later): every
// Fleet call carries the node's PEM public key, a timestamp and an ECDSA
// signature of the timestamp.
const (
	HeaderPublicKey = "flwr-public-key-bin"
	HeaderTimestamp = "flwr-timestamp"
	HeaderSignature = "flwr-signature-bin"
)

// The metadata of account login: the flwr CLI sends its tokens with every
// Control call, and stores the pair a server sends back under the same
// keys in a response's header.
const (
	HeaderAccessToken  = "flwr-oidc-access-token"
	HeaderRefreshToken = "flwr-oidc-refresh-token"
	// AuthnTypeOIDC is GetLoginDetails' authn_type for the device flow.
	AuthnTypeOIDC = "oidc"
)

// Flower's ports (flwr/common/constant.py).
const (
	PortServerAppIo  = 9091
	PortFleet        = 9092
	PortControl      = 9093
	PortClientAppIo  = 9094 // on each SuperNode
	PortFleetREST    = 9095
	PortSimulationIo = 9096
)

// Subject is what a Control request names, for ownership checks.
type Subject int

// The subjects of requests.
const (
	// None: the request names no run or node.
	None Subject = iota
	// Run: field 1 of the request is a run id (uint64).
	Run
	// Node: field 1 of the request is a node id (uint64).
	Node
	// Federation: field 1 of the request is a federation's name.
	Federation
)

// Method is one gRPC method of a SuperLink.
type Method struct {
	// Service is FleetService or ControlService; Name the short name.
	Service, Name string
	// Since is the first Flower version that has the method ("1.23"),
	// Until the first that no longer has it ("" while it stays).
	Since, Until string
	// ServerStreaming methods answer with a stream of messages.
	ServerStreaming bool
	// Login methods are the account login itself: Flower answers them
	// without a login.
	Login bool
	// About is what the request names, for ownership checks.
	About Subject
	// Lists says the response lists runs or nodes of several owners
	// (ListRuns, ListNodes, ShowFederation), to be filtered per account.
	Lists bool
	// Admin methods change the federation's shape or membership.
	Admin bool
}

// FullName is the method's gRPC name, "/flwr.proto.Control/StartRun".
func (m Method) FullName() string { return "/" + m.Service + "/" + m.Name }

// In reports whether Flower version v ("1.25", "1.25.0") has the method.
func (m Method) In(v string) bool {
	return !versionLess(v, m.Since) && (m.Until == "" || versionLess(v, m.Until))
}

// Oldest is the first Flower version the table covers (the last one whose
// SuperLink reads a CSV allowlist); a method Since Oldest may be older.
const Oldest = "1.22"

// Methods are the Fleet and Control methods of Flower 1.22 to 1.27, as
// Flower's fleet.proto and control.proto declare them at each release
// (a test compares the table with the sources of 1.22, 1.25 and 1.27).
var Methods = []Method{
	{Service: FleetService, Name: "CreateNode", Since: Oldest, Until: "1.23"},
	{Service: FleetService, Name: "DeleteNode", Since: Oldest, Until: "1.23"},
	{Service: FleetService, Name: "RegisterNode", Since: "1.23"},
	{Service: FleetService, Name: "ActivateNode", Since: "1.23"},
	{Service: FleetService, Name: "DeactivateNode", Since: "1.23"},
	{Service: FleetService, Name: "UnregisterNode", Since: "1.23"},
	{Service: FleetService, Name: "SendNodeHeartbeat", Since: Oldest},
	{Service: FleetService, Name: "PullMessages", Since: Oldest},
	{Service: FleetService, Name: "PushMessages", Since: Oldest},
	{Service: FleetService, Name: "GetRun", Since: Oldest},
	{Service: FleetService, Name: "GetFab", Since: Oldest},
	{Service: FleetService, Name: "PushObject", Since: Oldest},
	{Service: FleetService, Name: "PullObject", Since: Oldest},
	{Service: FleetService, Name: "ConfirmMessageReceived", Since: Oldest},

	{Service: ControlService, Name: "StartRun", Since: Oldest},
	{Service: ControlService, Name: "StopRun", Since: Oldest, About: Run},
	{Service: ControlService, Name: "StreamLogs", Since: Oldest, ServerStreaming: true, About: Run},
	{Service: ControlService, Name: "ListRuns", Since: Oldest, Lists: true},
	{Service: ControlService, Name: "GetLoginDetails", Since: Oldest, Login: true},
	{Service: ControlService, Name: "GetAuthTokens", Since: Oldest, Login: true},
	{Service: ControlService, Name: "PullArtifacts", Since: Oldest, About: Run},
	{Service: ControlService, Name: "RegisterNode", Since: "1.23"},
	{Service: ControlService, Name: "UnregisterNode", Since: "1.23", About: Node},
	{Service: ControlService, Name: "ListNodes", Since: "1.23", Lists: true},
	{Service: ControlService, Name: "ListFederations", Since: "1.24"},
	{Service: ControlService, Name: "ShowFederation", Since: "1.24", About: Federation, Lists: true},
	{Service: ControlService, Name: "CreateFederation", Since: "1.27", Admin: true},
	{Service: ControlService, Name: "ArchiveFederation", Since: "1.27", About: Federation, Admin: true},
	{Service: ControlService, Name: "AddNodeToFederation", Since: "1.27", About: Federation, Admin: true},
	{Service: ControlService, Name: "RemoveNodeFromFederation", Since: "1.27", About: Federation, Admin: true},
	{Service: ControlService, Name: "CreateInvitation", Since: "1.27", About: Federation, Admin: true},
	{Service: ControlService, Name: "ListInvitations", Since: "1.27"},
	{Service: ControlService, Name: "AcceptInvitation", Since: "1.27"},
	{Service: ControlService, Name: "RejectInvitation", Since: "1.27"},
	{Service: ControlService, Name: "RevokeInvitation", Since: "1.27", Admin: true},
}

var byFullName = func() map[string]Method {
	m := make(map[string]Method, len(Methods))
	for _, x := range Methods {
		m[x.FullName()] = x
	}
	return m
}()

// Lookup returns the table's entry of a full method name
// ("/flwr.proto.Control/StartRun").
func Lookup(fullName string) (Method, bool) {
	m, ok := byFullName[fullName]
	return m, ok
}

// ControlMethod returns the Control method of a short name ("StartRun").
func ControlMethod(name string) (Method, bool) { return Lookup("/" + ControlService + "/" + name) }

// ControlMethods are the Control methods of Flower version v, or of every
// version the table knows when v is "".
func ControlMethods(v string) []Method { return of(ControlService, v) }

// FleetMethods are the Fleet methods of Flower version v, or of every
// version the table knows when v is "".
func FleetMethods(v string) []Method { return of(FleetService, v) }

func of(service, v string) []Method {
	var out []Method
	for _, m := range Methods {
		if m.Service == service && (v == "" || m.In(v)) {
			out = append(out, m)
		}
	}
	return out
}

// Names returns the short names of ms.
func Names(ms []Method) []string {
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = m.Name
	}
	return out
}

// versionLess reports whether version a is before b, comparing the
// numbers of "1.25.0" and "1.25" part by part (missing parts are 0).
func versionLess(a, b string) bool {
	as, bs := strings.Split(a, "."), strings.Split(b, ".")
	for i := range max(len(as), len(bs)) {
		x, y := part(as, i), part(bs, i)
		if x != y {
			return x < y
		}
	}
	return false
}

func part(p []string, i int) int {
	if i >= len(p) {
		return 0
	}
	n, _ := strconv.Atoi(p[i])
	return n
}

// Control returns the full name of the Control method name
// ("/flwr.proto.Control/ListNodes"). It panics on a name the table lacks,
// so a misspelt name in a package-level variable fails at start.
func Control(name string) string {
	m, ok := ControlMethod(name)
	if !ok {
		panic("flwr: no Control method " + name)
	}
	return m.FullName()
}

// FleetPrefix starts the full name of every Fleet method.
const FleetPrefix = "/" + FleetService + "/"
