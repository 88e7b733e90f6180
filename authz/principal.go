package authz

import "strings"

// Kind is what sort of caller a Principal is.
type Kind string

// The kinds of Principal. Each kind has a name space of its own: a user
// "bob", a service client "bob" and a machine token "bob" are three
// principals, and none owns what another started.
const (
	// KindUser is a person signed in at the OpenID Connect provider;
	// Subject is the token's sub claim.
	KindUser Kind = "user"
	// KindClient is a service that holds a token of its own from the
	// provider (the OAuth 2.0 client-credentials grant); Subject is its
	// client_id.
	KindClient Kind = "client"
	// KindToken is a machine token from the gateway's token file; Subject
	// is the token's name.
	KindToken Kind = "token"
)

// Principal is who makes a Control call: one type for users, service
// clients and machine tokens. Two principals are the same caller only when
// both Kind and Subject are equal (compare with ==); a subject alone never
// identifies a caller.
type Principal struct {
	Kind    Kind   `json:"kind"`
	Subject string `json:"subject"`
}

// Key is p as "KIND:SUBJECT" ("user:bob", "client:bob", "token:ci"):
// distinct principals have distinct keys.
func (p Principal) Key() string { return string(p.Kind) + ":" + p.Subject }

// String is p as Flower's CLI shows an account (flwr_aid, owner_aid): a
// user's plain subject, as Flower shows its own accounts, and
// "client:NAME" or "token:NAME" for the others. A user whose subject
// itself starts with "user:", "client:" or "token:" is shown as its Key,
// "user:SUBJECT", so that no user reads as a client or a token: distinct
// principals of these kinds have distinct strings.
func (p Principal) String() string {
	if p.Kind == KindUser && !hasKindPrefix(p.Subject) {
		return p.Subject
	}
	return p.Key()
}

func hasKindPrefix(s string) bool {
	for _, k := range []Kind{KindUser, KindClient, KindToken} {
		if strings.HasPrefix(s, string(k)+":") {
			return true
		}
	}
	return false
}

// ValidName reports whether s can name a role, an account, a service
// client or a machine token: 1 to 64 letters, digits and ._@-, starting
// with a letter or digit.
func ValidName(s string) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	for i, c := range []byte(s) {
		alnum := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
		if !alnum && (i == 0 || !strings.ContainsRune("._@-", rune(c))) {
			return false
		}
	}
	return true
}
