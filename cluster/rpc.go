package cluster

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/cloud-sandbox/cloud-sandbox/fsm"
)

// Cluster RPCs are HTTP/1.1 requests on the muxed port (protocol byte 'C').
// Bodies are JSON, except a forwarded command, which travels as the exact
// bytes fsm.Encode produced so the leader logs what the follower encoded.
const (
	pathApply     = "/cluster/v1/apply"      // leader only: body = encoded command
	pathReadIndex = "/cluster/v1/read-index" // leader only
	pathJoin      = "/cluster/v1/join"       // any node; forwarded to the leader
	pathRemove    = "/cluster/v1/remove"     // any node; forwarded to the leader
	pathState     = "/cluster/v1/state"      // any node: its Raft last index
	pathRestore   = "/cluster/v1/restore"    // leader only: body = FSM snapshot document (admin.go)

	// headerTimeout carries the caller's remaining time in milliseconds so the
	// leader gives up before the caller does.
	headerTimeout = "Cluster-Timeout-Ms"
	// maxCommandBytes bounds a forwarded command (a snapshot is not a command).
	maxCommandBytes = 8 << 20
	// maxSnapshotBytes bounds a forwarded snapshot restore.
	maxSnapshotBytes = 1 << 30
	// defaultRPCTimeout bounds an RPC whose caller set no deadline.
	defaultRPCTimeout = 10 * time.Second
)

// Wire codes of the cluster errors; FSM business errors travel inside
// fsm.Response and keep their own codes.
var wireCodes = []struct {
	code string
	err  error
}{
	{"not_leader", ErrNotLeader},
	{"no_leader", ErrNoLeader},
	{"leadership_lost", ErrLeadershipLost},
	{"timeout", ErrTimeout},
	{"closed", ErrClosed},
}

// rpcError is the error part of every RPC reply.
type rpcError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// rpcReply is the body of every RPC reply.
type rpcReply struct {
	Response *fsm.Response `json:"response,omitempty"`
	Index    uint64        `json:"index,omitempty"`
	Error    *rpcError     `json:"error,omitempty"`
}

type joinRequest struct {
	ID   string `json:"id"`
	Addr string `json:"addr"`
	// Nonvoter asks for a member without a vote (a node without state that
	// has not caught up yet); absent means a voter, as before.
	Nonvoter bool `json:"nonvoter,omitempty"`
}

type removeRequest struct {
	ID string `json:"id"`
}

func toWire(err error) *rpcError {
	for _, w := range wireCodes {
		if errors.Is(err, w.err) {
			return &rpcError{Code: w.code, Message: err.Error()}
		}
	}
	return &rpcError{Code: "internal", Message: err.Error()}
}

// remoteError is an error a peer reported that has no cluster code.
type remoteError struct{ msg string }

func (e *remoteError) Error() string { return e.msg }

func fromWire(addr string, e *rpcError) error {
	for _, w := range wireCodes {
		if e.Code == w.code {
			return fmt.Errorf("%w (from %s: %s)", w.err, addr, e.Message)
		}
	}
	return &remoteError{msg: fmt.Sprintf("%s: %s", addr, e.Message)}
}

// transportError is a failure to exchange an RPC with a peer. sent=false
// means the request never left this node, so it cannot have been applied.
type transportError struct {
	addr string
	sent bool
	err  error
}

func (e *transportError) Error() string {
	return fmt.Sprintf("cluster rpc to %s: %v", e.addr, e.err)
}

func (e *transportError) Unwrap() error { return e.err }

// dialError marks an error from dialling, before any byte of the request.
type dialError struct{ err error }

func (e *dialError) Error() string { return e.err.Error() }
func (e *dialError) Unwrap() error { return e.err }

// --- server ---

func newRPCServer(n *Node) *http.Server {
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+pathApply, n.handleApply)
	mux.HandleFunc("POST "+pathReadIndex, n.handleReadIndex)
	mux.HandleFunc("POST "+pathJoin, n.handleJoin)
	mux.HandleFunc("POST "+pathRemove, n.handleRemove)
	mux.HandleFunc("POST "+pathState, n.handleState)
	mux.HandleFunc("POST "+pathRestore, n.handleRestore)
	return &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: handshakeTimeout,
		ReadTimeout:       defaultRPCTimeout,
		WriteTimeout:      n.cfg.ApplyTimeout + defaultRPCTimeout,
		IdleTimeout:       time.Minute,
		ErrorLog:          slogErrorLog(n.log),
	}
}

// rpcContext bounds a handler by the caller's remaining time and the node's ApplyTimeout.
func (n *Node) rpcContext(r *http.Request) (context.Context, context.CancelFunc) {
	d := n.cfg.ApplyTimeout
	if ms, err := strconv.ParseInt(r.Header.Get(headerTimeout), 10, 64); err == nil && ms > 0 {
		d = min(d, time.Duration(ms)*time.Millisecond)
	}
	return context.WithTimeout(r.Context(), d)
}

func writeReply(w http.ResponseWriter, reply rpcReply) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(reply)
}

func (n *Node) handleApply(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := n.rpcContext(r)
	defer cancel()
	data, err := io.ReadAll(io.LimitReader(r.Body, maxCommandBytes+1))
	if err != nil || len(data) > maxCommandBytes || len(data) == 0 {
		writeReply(w, rpcReply{Error: &rpcError{Code: "internal", Message: fmt.Sprintf("bad command body (%d bytes, %v)", len(data), err)}})
		return
	}
	// Refuse what the FSM would panic on, before it reaches the log.
	if _, err := fsm.Decode(data); err != nil {
		writeReply(w, rpcReply{Error: &rpcError{Code: "internal", Message: err.Error()}})
		return
	}
	resp, err := n.applyLocal(ctx, data)
	if err != nil {
		writeReply(w, rpcReply{Error: toWire(err)})
		return
	}
	writeReply(w, rpcReply{Response: resp})
}

func (n *Node) handleReadIndex(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := n.rpcContext(r)
	defer cancel()
	idx, err := n.readIndex(ctx)
	if err != nil {
		writeReply(w, rpcReply{Error: toWire(err)})
		return
	}
	writeReply(w, rpcReply{Index: idx})
}

func (n *Node) handleJoin(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := n.rpcContext(r)
	defer cancel()
	var req joinRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<16)).Decode(&req); err != nil || req.ID == "" || req.Addr == "" {
		writeReply(w, rpcReply{Error: &rpcError{Code: "internal", Message: fmt.Sprintf("bad join request: %v", err)}})
		return
	}
	// A join forwarded by a peer is executed here or refused, never forwarded
	// again, so two nodes with different views of the leader cannot bounce it.
	join := n.joinAs
	if r.URL.Query().Get("forwarded") != "" {
		join = n.joinLocal
	}
	if err := join(ctx, req.ID, req.Addr, !req.Nonvoter); err != nil {
		writeReply(w, rpcReply{Error: toWire(err)})
		return
	}
	writeReply(w, rpcReply{})
}

func (n *Node) handleRemove(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := n.rpcContext(r)
	defer cancel()
	var req removeRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<16)).Decode(&req); err != nil || req.ID == "" {
		writeReply(w, rpcReply{Error: &rpcError{Code: "internal", Message: fmt.Sprintf("bad remove request: %v", err)}})
		return
	}
	if err := n.removeLocal(ctx, req.ID); err != nil {
		writeReply(w, rpcReply{Error: toWire(err)})
		return
	}
	writeReply(w, rpcReply{})
}

// handleState answers the probe of a node that starts without state
// (readmit.go): this node's Raft last index, 0 without state.
func (n *Node) handleState(w http.ResponseWriter, r *http.Request) {
	writeReply(w, rpcReply{Index: n.raft.LastIndex()})
}

// handleRestore runs a restore forwarded by a peer; never forwarded again.
func (n *Node) handleRestore(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := n.rpcContext(r)
	defer cancel()
	data, err := io.ReadAll(io.LimitReader(r.Body, maxSnapshotBytes+1))
	if err != nil || len(data) > maxSnapshotBytes {
		writeReply(w, rpcReply{Error: &rpcError{Code: "internal", Message: fmt.Sprintf("bad snapshot body (%d bytes, %v)", len(data), err)}})
		return
	}
	if err := n.restoreLocal(ctx, data); err != nil {
		writeReply(w, rpcReply{Error: toWire(err)})
		return
	}
	writeReply(w, rpcReply{})
}

// --- client ---

// rpcClient calls peers' cluster RPCs over pooled keep-alive connections.
type rpcClient struct {
	hc *http.Client
	tr *http.Transport
}

func newRPCClient(tlsCfg *TLS) *rpcClient {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			timeout := handshakeTimeout
			if dl, ok := ctx.Deadline(); ok {
				timeout = min(timeout, time.Until(dl))
			}
			conn, err := dialProto(network, addr, protoRPC, timeout, tlsCfg)
			if err != nil {
				return nil, &dialError{err: err}
			}
			return conn, nil
		},
		MaxIdleConnsPerHost: 64,
		IdleConnTimeout:     30 * time.Second,
		DisableCompression:  true,
	}
	return &rpcClient{hc: &http.Client{Transport: tr}, tr: tr}
}

func (c *rpcClient) close() { c.tr.CloseIdleConnections() }

// call POSTs body to addr+path and decodes the reply, mapping the peer's
// error codes back to this package's errors.
func (c *rpcClient) call(ctx context.Context, addr, path, contentType string, body []byte) (*rpcReply, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, defaultRPCTimeout)
		defer cancel()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+addr+path, bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("build cluster rpc %s: %w", path, err)
	}
	req.Header.Set("Content-Type", contentType)
	if dl, ok := ctx.Deadline(); ok {
		req.Header.Set(headerTimeout, strconv.FormatInt(time.Until(dl).Milliseconds(), 10))
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		var de *dialError
		return nil, &transportError{addr: addr, sent: !errors.As(err, &de), err: err}
	}
	defer resp.Body.Close()
	var reply rpcReply
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxCommandBytes)).Decode(&reply); err != nil {
		return nil, &transportError{addr: addr, sent: true, err: fmt.Errorf("decode reply (status %d): %w", resp.StatusCode, err)}
	}
	if reply.Error != nil {
		return nil, fromWire(addr, reply.Error)
	}
	return &reply, nil
}

func (c *rpcClient) apply(ctx context.Context, addr string, data []byte) (*fsm.Response, error) {
	reply, err := c.call(ctx, addr, pathApply, "application/octet-stream", data)
	if err != nil {
		return nil, err
	}
	if reply.Response == nil {
		return nil, &transportError{addr: addr, sent: true, err: errors.New("reply without response")}
	}
	return reply.Response, nil
}

func (c *rpcClient) readIndex(ctx context.Context, addr string) (uint64, error) {
	reply, err := c.call(ctx, addr, pathReadIndex, "application/json", nil)
	if err != nil {
		return 0, err
	}
	return reply.Index, nil
}

func (c *rpcClient) lastIndex(ctx context.Context, addr string) (uint64, error) {
	reply, err := c.call(ctx, addr, pathState, "application/json", nil)
	if err != nil {
		return 0, err
	}
	return reply.Index, nil
}

func (c *rpcClient) join(ctx context.Context, addr, id, joinAddr string, forwarded, voter bool) error {
	body, _ := json.Marshal(joinRequest{ID: id, Addr: joinAddr, Nonvoter: !voter})
	path := pathJoin
	if forwarded {
		path += "?forwarded=1"
	}
	_, err := c.call(ctx, addr, path, "application/json", body)
	return err
}

func (c *rpcClient) remove(ctx context.Context, addr, id string) error {
	body, _ := json.Marshal(removeRequest{ID: id})
	_, err := c.call(ctx, addr, pathRemove, "application/json", body)
	return err
}

func slogErrorLog(l *slog.Logger) *log.Logger {
	return slog.NewLogLogger(l.Handler(), slog.LevelWarn)
}
