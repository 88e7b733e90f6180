package accounts

import (
	"context"
	"log/slog"

	"github.com/zitadel/oidc/v3/pkg/oidc"
)

// providerLog is the context key of the logger of the Provider serving a
// request.
type providerLog struct{}

// LogHandler returns a handler for slog.SetDefault that gives each
// Provider the records zitadel's op package logs while it serves the
// Provider's requests: op logs only through slog.Default (its WithLogger
// option has no effect since v3.48), with the request's context. Those
// records go to the logger given to New, with "authorization_pending" (a
// device login waiting for its user, once a poll) at Debug rather than
// Info. Every other record goes to fallback.
func LogHandler(fallback slog.Handler) slog.Handler { return &logRouter{fallback: fallback} }

type logRouter struct {
	fallback slog.Handler
	// with repeats the WithAttrs and WithGroup calls so far on a
	// Provider's handler; nil for none.
	with func(slog.Handler) slog.Handler
}

// target is the handler of the Provider serving ctx's request, if any.
func (h *logRouter) target(ctx context.Context) (slog.Handler, bool) {
	l, ok := ctx.Value(providerLog{}).(*slog.Logger)
	if !ok {
		return nil, false
	}
	if h.with != nil {
		return h.with(l.Handler()), true
	}
	return l.Handler(), true
}

func (h *logRouter) Enabled(ctx context.Context, level slog.Level) bool {
	if t, ok := h.target(ctx); ok {
		return t.Enabled(ctx, level)
	}
	return h.fallback.Enabled(ctx, level)
}

func (h *logRouter) Handle(ctx context.Context, r slog.Record) error {
	t, ok := h.target(ctx)
	if !ok {
		return h.fallback.Handle(ctx, r)
	}
	if r.Level == slog.LevelInfo && pending(r) {
		r.Level = slog.LevelDebug
		if !t.Enabled(ctx, r.Level) {
			return nil
		}
	}
	return t.Handle(ctx, r)
}

// pending reports whether r is op's answer to a device login's poll
// before its user signed in.
func pending(r slog.Record) bool {
	found := false
	r.Attrs(func(a slog.Attr) bool {
		if e, ok := a.Value.Any().(*oidc.Error); ok && e.ErrorType == oidc.AuthorizationPending {
			found = true
		}
		return !found
	})
	return found
}

func (h *logRouter) WithAttrs(as []slog.Attr) slog.Handler {
	return h.then(h.fallback.WithAttrs(as), func(t slog.Handler) slog.Handler { return t.WithAttrs(as) })
}

func (h *logRouter) WithGroup(name string) slog.Handler {
	return h.then(h.fallback.WithGroup(name), func(t slog.Handler) slog.Handler { return t.WithGroup(name) })
}

func (h *logRouter) then(fallback slog.Handler, f func(slog.Handler) slog.Handler) slog.Handler {
	with := f
	if prev := h.with; prev != nil {
		with = func(t slog.Handler) slog.Handler { return f(prev(t)) }
	}
	return &logRouter{fallback: fallback, with: with}
}
