// Package authz decides which Control API methods an account may call,
// from its roles, and whether it may act on every account's runs and
// SuperNodes or only on its own.
//
// A Policy maps role names to the methods they grant. Roles come from the
// account's token (a claim such as groups or Keycloak's realm_access.roles)
// or from a bearer token's entry in the token file. A method no role of the
// caller grants is refused, and so is any method this package does not
// know: a newer Flower's Control method stays closed, even to "*", until
// it is added to the flwr table with its default roles (DefaultRoles).
//
// The caller itself is a Principal: a user, a service client or a machine
// token, each kind a name space of its own.
package authz

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/nodekeys/nodekeys/flwr"
)

// ControlService is the Control API's gRPC service name.
const ControlService = flwr.ControlService

// Methods are the Control methods a role can grant, by short name: every
// Control method of Flower 1.22 to 1.27 (flwr.Methods) but GetLoginDetails
// and GetAuthTokens, which are the login itself and need no role.
var Methods = func() []string {
	var out []string
	for _, m := range flwr.ControlMethods("") {
		if !m.Login {
			out = append(out, m.Name)
		}
	}
	return out
}()

// OwnMethods are the methods whose calls the gateway keeps to the caller's
// own runs, nodes and memberships: it checks the run or node a request
// names, filters the runs, nodes, members and invitations of a response
// (ListRuns, ListNodes, ListFederations, ShowFederation, ListInvitations),
// and records new runs and nodes. "*" on a role without SeeAll grants
// these. The others (creating and archiving federations, their SuperNodes
// and invitations) act on every account's federations: a role without
// SeeAll grants them only by naming them, and Warnings says so.
var OwnMethods = []string{"StartRun", "StopRun", "StreamLogs", "ListRuns", "PullArtifacts",
	"RegisterNode", "UnregisterNode", "ListNodes", "ListFederations", "ShowFederation", "ListInvitations"}

// defaultRoles is the default policy's grant of each method in Methods:
// the roles of Default that may call it. A method the flwr table gains
// needs an entry here (a test checks); until then no role grants it.
var defaultRoles = map[string][]string{
	"StartRun":       {"admin", "member"},
	"StopRun":        {"admin", "member"},
	"StreamLogs":     {"admin", "member"},
	"ListRuns":       {"admin", "member"},
	"PullArtifacts":  {"admin", "member"},
	"RegisterNode":   {"admin", "member"},
	"UnregisterNode": {"admin", "member"},
	"ListNodes":      {"admin", "member"},
	// A member sees the federations with its own runs, SuperNodes and
	// membership only.
	"ListFederations": {"admin", "member"},
	"ShowFederation":  {"admin", "member"},
	"ListInvitations": {"admin", "member"},
	// Behind the gateway Flower sees no account of the caller's, so a
	// change to a federation or an invitation is made for every account:
	// an admin's.
	"CreateFederation":         {"admin"},
	"ArchiveFederation":        {"admin"},
	"AddNodeToFederation":      {"admin"},
	"RemoveNodeFromFederation": {"admin"},
	"CreateInvitation":         {"admin"},
	"AcceptInvitation":         {"admin"},
	"RejectInvitation":         {"admin"},
	"RevokeInvitation":         {"admin"},
}

// DefaultRoles returns the roles of the default policy (Default) that
// grant method, a short name ("StartRun"); none for a method the table
// does not know.
func DefaultRoles(method string) []string { return slices.Clone(defaultRoles[method]) }

// All grants every method in Methods (for a role without SeeAll, every
// method in OwnMethods).
const All = "*"

// Role is what one role grants.
type Role struct {
	// Methods are short method names ("StartRun") or All.
	Methods []string `yaml:"methods" json:"methods"`
	// SeeAll lets the role see and act on every account's runs and
	// SuperNodes; without it an account sees only those it started or
	// registered.
	SeeAll bool `yaml:"see_all" json:"see_all,omitempty"`
}

// Policy maps role names to grants.
type Policy struct {
	// RolesClaim is the claim holding an account's roles: its name, or a
	// dotted path into nested claims ("groups", "realm_access.roles",
	// "https://example.org/roles"). A name with dots is read whole when
	// the token has a claim of that name (oidcauth.Claim). Empty means the
	// login's groups claim (oidc.groups_claim).
	RolesClaim string `yaml:"roles_claim" json:"roles_claim,omitempty"`
	// Roles maps a role name, as it appears in the claim, to its grant.
	Roles map[string]Role `yaml:"roles" json:"roles"`
}

// Default is the policy used when the config names none: "admin" may call
// every method and see every run and node; "member" the methods
// DefaultRoles gives it, on its own runs, nodes and memberships only.
func Default() *Policy {
	var member []string
	for _, m := range Methods {
		if slices.Contains(defaultRoles[m], "member") {
			member = append(member, m)
		}
	}
	return &Policy{Roles: map[string]Role{
		"admin":  {Methods: []string{All}, SeeAll: true},
		"member": {Methods: member},
	}}
}

// Validate reports unknown method names and empty roles. Any method of
// the table may be named by any role (see Warnings).
func (p *Policy) Validate() error {
	if len(p.Roles) == 0 {
		return errors.New("authz: the policy has no roles")
	}
	for name, r := range p.Roles {
		if name == "" {
			return errors.New("authz: a role without a name")
		}
		if len(r.Methods) == 0 {
			return fmt.Errorf("authz: role %q grants no method", name)
		}
		for _, m := range r.Methods {
			if m != All && !slices.Contains(Methods, m) {
				return fmt.Errorf("authz: role %q: unknown method %q (known: %s, or %q)", name, m, strings.Join(Methods, ", "), All)
			}
		}
	}
	return nil
}

// Warnings are what a valid policy grants that an operator may not mean:
// a role without see_all that names a method acting on every account's
// federations.
func (p *Policy) Warnings() []string {
	var out []string
	for name, r := range p.Roles {
		if r.SeeAll {
			continue
		}
		for _, m := range r.Methods {
			if m != All && !slices.Contains(OwnMethods, m) {
				out = append(out, fmt.Sprintf("role %q grants %s without see_all: %s acts on every account's federations, so this role's holders act as admins for it", name, m, m))
			}
		}
	}
	sort.Strings(out)
	return out
}

// Decision is what a caller may do with one method.
type Decision struct {
	// SeeAll: the caller acts on every account's runs and nodes.
	SeeAll bool
}

// Error is a refusal: the method and the roles that would grant it.
type Error struct {
	Method string
	Need   []string // roles that grant Method; empty if none does
	Have   []string
}

func (e *Error) Error() string {
	have := "no role"
	if len(e.Have) > 0 {
		have = "roles " + strings.Join(e.Have, ", ")
	}
	if len(e.Need) == 0 {
		return fmt.Sprintf("%s is not granted to any role by this gateway's policy (this account has %s)", e.Method, have)
	}
	return fmt.Sprintf("%s needs the role %s (this account has %s)", e.Method, strings.Join(e.Need, " or "), have)
}

// Decide says whether an account with roles may call method, given as a
// full gRPC method name ("/flwr.proto.Control/StartRun") or a short one.
// A refusal is an *Error.
func (p *Policy) Decide(method string, roles []string) (Decision, error) {
	short := strings.TrimPrefix(method, "/"+ControlService+"/")
	known := slices.Contains(Methods, short)
	var d Decision
	allowed := false
	var need []string
	for name, r := range p.Roles {
		// "*" grants a role without SeeAll the methods kept to its own;
		// a method named outright is granted as named.
		grants := known && (slices.Contains(r.Methods, short) ||
			slices.Contains(r.Methods, All) && (r.SeeAll || slices.Contains(OwnMethods, short)))
		if !grants {
			continue
		}
		need = append(need, name)
		if slices.Contains(roles, name) {
			allowed = true
			d.SeeAll = d.SeeAll || r.SeeAll
		}
	}
	if !allowed {
		sort.Strings(need)
		return Decision{}, &Error{Method: short, Need: need, Have: roles}
	}
	return d, nil
}
