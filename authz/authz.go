// Package authz decides which Control API methods an account may call,
// from its roles, and whether it may act on every account's runs and
// SuperNodes or only on its own.
//
// A Policy maps role names to the methods they grant. Roles come from the
// account's token (a claim such as groups or Keycloak's realm_access.roles)
// or from a bearer token's entry in the token file. A method no role of the
// caller grants is refused, and so is any method this package does not
// know: a newer Flower's Control method stays closed until a role names it.
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
// own runs and nodes: it checks the run or node a request names, filters
// the lists, and records new runs and nodes. A role without SeeAll may
// grant these only; the others (federations and invitations) show or
// change every account's runs and nodes, and need a SeeAll role.
var OwnMethods = []string{"StartRun", "StopRun", "StreamLogs", "ListRuns", "PullArtifacts",
	"RegisterNode", "UnregisterNode", "ListNodes"}

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
// everything and see every run and node; "member" may start runs, register
// SuperNodes and manage only its own runs and nodes.
func Default() *Policy {
	return &Policy{Roles: map[string]Role{
		"admin":  {Methods: []string{All}, SeeAll: true},
		"member": {Methods: slices.Clone(OwnMethods)},
	}}
}

// Validate reports unknown method names and empty roles.
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
			if m != All && !r.SeeAll && !slices.Contains(OwnMethods, m) {
				return fmt.Errorf("authz: role %q: %s shows or changes every account's runs and nodes, so it needs see_all: true", name, m)
			}
		}
	}
	return nil
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
		grants := known && (slices.Contains(r.Methods, All) || slices.Contains(r.Methods, short)) &&
			(r.SeeAll || slices.Contains(OwnMethods, short))
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
