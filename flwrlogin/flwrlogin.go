// Package flwrlogin is the client side of Flower's account login, kept for
// the programs that import it: the code is package control's (Login,
// Credentials, the token files), which also dials the Control API and
// reads the flwr CLI's own token stores. New code uses package control.
package flwrlogin

import (
	"context"
	"time"

	"google.golang.org/grpc"

	"github.com/nodekeys/nodekeys/control"
)

// The metadata keys of the tokens.
const (
	HeaderAccessToken  = control.HeaderAccessToken
	HeaderRefreshToken = control.HeaderRefreshToken
)

// Tokens are an account's access and refresh tokens.
type Tokens = control.Tokens

// Credentials send an account's tokens with every call; see
// control.Credentials.
type Credentials = control.Credentials

// Login runs a device login; see control.Login.
func Login(ctx context.Context, conn grpc.ClientConnInterface, show func(uri string, expiresIn time.Duration)) (*Tokens, error) {
	return control.Login(ctx, conn, show)
}

// ReadFile reads a login file; see control.ReadLogin.
func ReadFile(path string) (*Tokens, error) {
	l, err := control.ReadLogin(path, "")
	if err != nil {
		return nil, err
	}
	return &l.Tokens, nil
}

// WriteFile writes nodekeys login's token file; see control.WriteFile.
func WriteFile(path string, t *Tokens) error { return control.WriteFile(path, t) }

// NewCredentials returns credentials for t; path, if not empty, is
// rewritten with refreshed tokens; secure requires TLS.
func NewCredentials(t *Tokens, path string, secure bool) *Credentials {
	var f *control.LoginFile
	if path != "" {
		f = &control.LoginFile{Path: path, Format: control.Nodekeys}
	}
	return control.NewCredentials(t, f, secure)
}

// DefaultFile is where nodekeys login keeps tokens; see control.DefaultFile.
func DefaultFile() string { return control.DefaultFile() }
