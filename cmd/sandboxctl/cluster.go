package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

// health is GET /health.
type health struct {
	Service string `json:"service"`
	Status  string `json:"status"`
	NodeID  string `json:"node_id"`
	Leader  string `json:"leader"`
	Role    string `json:"role"`
	Reason  string `json:"reason,omitempty"`
}

// getHealth reads /health, which answers 503 "starting" with a body too.
func (c *client) health(ctx context.Context) (*health, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+"/health", nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var h health
	if err := json.NewDecoder(resp.Body).Decode(&h); err != nil {
		return nil, fmt.Errorf("decode /health (status %d): %w", resp.StatusCode, err)
	}
	return &h, nil
}

// poolStats is GET /api/v1/sandbox/stats.
type poolStats struct {
	Total       int    `json:"total"`
	Idle        int    `json:"idle"`
	Active      int    `json:"active"`
	Pending     int    `json:"pending"`
	Paused      int    `json:"paused"`
	Resuming    int    `json:"resuming"`
	Terminating int    `json:"terminating"`
	Failed      int    `json:"failed"`
	MinSize     int    `json:"min_size"`
	MaxSize     int    `json:"max_size"`
	Image       string `json:"image"`
}

type statusView struct {
	Health       *health    `json:"health"`
	AppliedIndex uint64     `json:"applied_index"`
	Pool         *poolStats `json:"pool"`
}

// cmdStatus: this node's health and role, the leader, the index of the
// state it serves and the pool's counts. Without a token only /health.
func cmdStatus(e *env, args []string) error {
	if _, _, err := parseArgs(e, "status", flag.NewFlagSet("status", flag.ContinueOnError), args, 0); err != nil {
		return err
	}
	c := e.client(true)
	ctx := context.Background()
	h, err := c.health(ctx)
	if err != nil {
		return fail("status", err)
	}
	v := statusView{Health: h}
	if e.token != "" {
		var st poolStats
		idx, err := c.do(ctx, http.MethodGet, "/api/v1/sandbox/stats", nil, &st)
		if err != nil {
			return fail("status: pool stats", err)
		}
		v.Pool = &st
		v.AppliedIndex, _ = strconv.ParseUint(idx, 10, 64)
	}
	out := kv{{"node", h.NodeID}, {"status", h.Status}, {"role", h.Role}, {"leader", h.Leader}}
	if h.Reason != "" {
		out = append(out, [2]string{"reason", h.Reason})
	}
	if v.Pool != nil {
		p := v.Pool
		out = append(out,
			[2]string{"applied index", strconv.FormatUint(v.AppliedIndex, 10)},
			[2]string{"pool", fmt.Sprintf("total %d, idle %d, active %d, pending %d, paused %d, resuming %d, terminating %d, failed %d",
				p.Total, p.Idle, p.Active, p.Pending, p.Paused, p.Resuming, p.Terminating, p.Failed)},
			[2]string{"pool size", fmt.Sprintf("min %d, max %d", p.MinSize, p.MaxSize)},
			[2]string{"pool image", p.Image})
	} else {
		out = append(out, [2]string{"pool", "set SANDBOX_TOKEN to see the applied index and pool"})
	}
	if err := e.output(v, out); err != nil {
		return err
	}
	if h.Status != "ok" {
		return &exitErr{code: exitError, msg: "node not ready: " + h.Reason}
	}
	return nil
}

// member is one entry of GET /api/v1/admin/members.
type member struct {
	ID        string `json:"id"`
	Addr      string `json:"addr"`
	Leader    bool   `json:"leader"`
	Voter     bool   `json:"voter"`
	Reachable bool   `json:"reachable"`
	LastIndex uint64 `json:"last_index,omitempty"`
	Error     string `json:"error,omitempty"`
}

type membersView struct {
	NodeID     string   `json:"node_id"`
	LeaderID   string   `json:"leader_id"`
	LeaderAddr string   `json:"leader_addr"`
	Members    []member `json:"members"`
}

func (c *client) members(ctx context.Context) (*membersView, error) {
	var v membersView
	_, err := c.do(ctx, http.MethodGet, "/api/v1/admin/members", nil, &v)
	return &v, err
}

// cmdMembers lists the Raft servers and whether each answered a probe.
func cmdMembers(e *env, args []string) error {
	if _, _, err := parseArgs(e, "members", flag.NewFlagSet("members", flag.ContinueOnError), args, 0); err != nil {
		return err
	}
	v, err := e.client(true).members(context.Background())
	if err != nil {
		return fail("members", err)
	}
	t := &table{header: []string{"ID", "ADDRESS", "VOTER", "LEADER", "HEALTH", "LAST INDEX"}}
	for _, m := range v.Members {
		h, idx := "ok", strconv.FormatUint(m.LastIndex, 10)
		if !m.Reachable {
			h, idx = "unreachable: "+m.Error, ""
		}
		t.add(m.ID, m.Addr, yesNo(m.Voter), yesNo(m.Leader), h, idx)
	}
	return e.output(v, t)
}

// cmdLeader prints the leader's id (and Raft address, which /health does
// not carry, when the token is an admin's).
func cmdLeader(e *env, args []string) error {
	if _, _, err := parseArgs(e, "leader", flag.NewFlagSet("leader", flag.ContinueOnError), args, 0); err != nil {
		return err
	}
	c := e.client(true)
	h, err := c.health(context.Background())
	if err != nil {
		return fail("leader", err)
	}
	if h.Leader == "" {
		return &exitErr{code: exitError, msg: "leader: no leader known to " + h.NodeID + " (election in progress?)"}
	}
	v := map[string]string{"leader_id": h.Leader}
	if e.token != "" {
		if m, err := c.members(context.Background()); err == nil && m.LeaderID == h.Leader {
			v["leader_addr"] = m.LeaderAddr
		}
	}
	if e.json {
		return writeJSON(e.stdout, v)
	}
	if v["leader_addr"] != "" {
		_, err = fmt.Fprintf(e.stdout, "%s %s\n", h.Leader, v["leader_addr"])
		return err
	}
	_, err = fmt.Fprintln(e.stdout, h.Leader)
	return err
}

// cmdDrain drains a placement host (Nomad client node): no new sandbox
// goes there and its idle pool sandboxes are recycled; --undo makes it
// eligible again. The local Docker driver answers 501.
func cmdDrain(e *env, args []string) error {
	fs := flag.NewFlagSet("drain", flag.ContinueOnError)
	undo := fs.Bool("undo", false, "make the node eligible for new sandboxes again")
	pos, _, err := parseArgs(e, "drain", fs, args, 1)
	if err != nil {
		return err
	}
	method, what := http.MethodPost, "drain "+pos[0]
	if *undo {
		method, what = http.MethodDelete, "drain --undo "+pos[0]
	}
	var out struct {
		Node         string         `json:"node"`
		Eligible     bool           `json:"eligible"`
		IdleReleased []string       `json:"idle_released"`
		Remaining    map[string]int `json:"remaining"`
	}
	if _, err := e.client(true).do(context.Background(), method, "/api/v1/admin/nodes/"+url.PathEscape(pos[0])+"/drain", nil, &out); err != nil {
		return fail(what, err)
	}
	remaining := []string{}
	for _, st := range []string{"active", "paused", "resuming", "pending", "terminating", "failed"} {
		if n := out.Remaining[st]; n > 0 {
			remaining = append(remaining, fmt.Sprintf("%d %s", n, st))
		}
	}
	return e.output(out, kv{
		{"node", out.Node}, {"eligible", yesNo(out.Eligible)},
		{"idle released", strings.Join(out.IdleReleased, " ")},
		{"still there", strings.Join(remaining, ", ")},
	})
}

// cmdToken prints an access token from POST /api/v1/auth/token
// (development mode: any user; admin only for ADMIN_USERS).
func cmdToken(e *env, args []string) error {
	fs := flag.NewFlagSet("token", flag.ContinueOnError)
	user := fs.String("user", "", "user id")
	role := fs.String("role", "", "user (default) or admin")
	apiKey := fs.String("api-key", "", "API key (production mode)")
	if _, _, err := parseArgs(e, "token", fs, args, 0); err != nil {
		return err
	}
	if *user == "" && *apiKey == "" {
		return usageErr("token: --user is required (or --api-key in production mode)")
	}
	body := map[string]string{"user_id": *user}
	if *role != "" {
		body["role"] = *role
	}
	if *apiKey != "" {
		body["api_key"] = *apiKey
	}
	var tok struct {
		AccessToken  string `json:"access_token"`
		RefreshToken string `json:"refresh_token"`
		TokenType    string `json:"token_type"`
		ExpiresIn    string `json:"expires_in"`
	}
	if _, err := e.client(true).do(context.Background(), http.MethodPost, "/api/v1/auth/token", body, &tok); err != nil {
		return fail("token", err)
	}
	if *role != "" {
		// The server grants admin only to ADMIN_USERS and answers anyone
		// else with a user token (the guide's body keeps working): say so.
		if got := tokenRole(tok.AccessToken); got != *role {
			fmt.Fprintf(e.stderr, "sandboxctl: token: asked for role %q, the server granted %q (is %s in ADMIN_USERS?)\n", *role, got, *user)
		}
	}
	if e.json {
		return writeJSON(e.stdout, tok)
	}
	_, err := fmt.Fprintln(e.stdout, tok.AccessToken)
	return err
}

// tokenRole reads the role claim of a JWT without verifying it: only to
// tell the user what the server granted.
func tokenRole(jwt string) string {
	parts := strings.Split(jwt, ".")
	if len(parts) != 3 {
		return ""
	}
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return ""
	}
	var c struct {
		Role string `json:"role"`
	}
	_ = json.Unmarshal(raw, &c)
	return c.Role
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}
