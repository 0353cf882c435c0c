package fsm

import (
	"slices"
	"strings"
	"time"
)

// MaxEgressAllow bounds one grant's allow-list: every entry becomes a
// firewall rule (or a pinned host name) in each sandbox it applies to.
const MaxEgressAllow = 64

// EgressGrant lets a user, or every user of a role, create sandboxes with
// network egress. Allow lists the CIDRs and host names they may reach; an
// empty Allow means any public address. Whatever a grant says, link-local
// and metadata addresses, the host, the control plane and other sandboxes
// stay unreachable: the drivers deny those before they look at Allow.
type EgressGrant struct {
	// Subject is "user:<id>" or "role:<name>".
	Subject string   `json:"subject"`
	Allow   []string `json:"allow,omitempty"`
	// By is the admin who set it, At when.
	By string    `json:"by,omitempty"`
	At time.Time `json:"at"`
}

// Copy returns a grant whose allow-list the caller may change.
func (g *EgressGrant) Copy() *EgressGrant {
	if g == nil {
		return nil
	}
	c := *g
	c.Allow = slices.Clone(g.Allow)
	return &c
}

// EgressGrantSet sets (or, with Delete, removes) the grant for Subject. The
// API validates Allow's entries; apply checks only what keeps state sane.
type EgressGrantSet struct {
	Header
	Grant  EgressGrant `json:"grant"`
	Delete bool        `json:"delete,omitempty"`
}

// Type implements Command.
func (*EgressGrantSet) Type() CommandType { return TypeEgressGrantSet }

// EgressSubject is the grant subject naming one user or one role.
func EgressSubject(kind, name string) string { return kind + ":" + name }

// ValidEgressSubject reports whether s is "user:<id>" or "role:<name>".
func ValidEgressSubject(s string) bool {
	kind, name, ok := strings.Cut(s, ":")
	return ok && name != "" && (kind == "user" || kind == "role")
}

func applyEgressGrantSet(t *tx, c *EgressGrantSet) *Response {
	g := c.Grant.Copy()
	switch {
	case !ValidEgressSubject(g.Subject):
		return fail(errorf(CodeInvalid, "egress grant subject %q must be user:<id> or role:<name>", g.Subject))
	case len(g.Allow) > MaxEgressAllow:
		return fail(errorf(CodeInvalid, "egress grant lists %d destinations; at most %d", len(g.Allow), MaxEgressAllow))
	}
	old := t.egressGrant(g.Subject)
	if c.Delete {
		if old == nil {
			return fail(errorf(CodeNotFound, "no egress grant for %s", g.Subject))
		}
		must(t.txn.Delete(tableEgressGrants, old))
		return &Response{}
	}
	g.At = c.Now
	must(t.txn.Insert(tableEgressGrants, g))
	return &Response{}
}

// egressGrant returns the stored grant for subject, or nil.
func (t *tx) egressGrant(subject string) *EgressGrant {
	raw, err := t.txn.First(tableEgressGrants, "id", subject)
	must(err)
	if raw == nil {
		return nil
	}
	return raw.(*EgressGrant)
}

// admitEgress returns the allow-list a new sandbox of owner (with role) gets
// when it asks for network: the user's own grant, else the role's. Without
// either the create is refused, so every node agrees on who may have egress
// at the moment the create is applied.
func (t *tx) admitEgress(owner, role string) ([]string, *Error) {
	g := t.egressGrant(EgressSubject("user", owner))
	if g == nil && role != "" {
		g = t.egressGrant(EgressSubject("role", role))
	}
	if g == nil {
		return nil, errorf(CodeForbidden, "network egress is not granted to %s; an admin grants it with PUT /api/v1/egress/grants/user:%s", owner, owner)
	}
	return slices.Clone(g.Allow), nil
}

// EgressGrants returns every grant, ordered by subject.
func (f *FSM) EgressGrants() []*EgressGrant {
	it, err := f.read().Get(tableEgressGrants, "id")
	must(err)
	var out []*EgressGrant
	for raw := it.Next(); raw != nil; raw = it.Next() {
		out = append(out, raw.(*EgressGrant).Copy())
	}
	return out
}

// EgressGrantFor returns the grant a new sandbox of user (with role) would
// get: the user's own, else the role's; nil when neither exists.
func (f *FSM) EgressGrantFor(user, role string) *EgressGrant {
	t := &tx{txn: f.read()}
	g := t.egressGrant(EgressSubject("user", user))
	if g == nil && role != "" {
		g = t.egressGrant(EgressSubject("role", role))
	}
	return g.Copy()
}
