// Package supernodes registers SuperNode public keys with a Flower
// SuperLink (1.23 and later) through its Control API, lists them, and
// makes the SuperLink's registrations follow a set of key files: what
// `flwr supernode register` does one key at a time, for a federation.
//
// Flower's rules, which the plans here respect: a key is matched as the
// exact bytes of its PEM SubjectPublicKeyInfo (as OpenSSL writes it); a
// key registered twice is refused; a key once unregistered stays burned
// and can never be registered again; a SuperLink with in-memory state
// forgets every registration when it restarts.
package supernodes

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/nodekeys/nodekeys/internal/flwrpb"
	"github.com/nodekeys/nodekeys/keys"
)

// ErrAlreadyRegistered is returned by Register for a key the SuperLink
// already holds, registered or burned ("Public key already in use").
var ErrAlreadyRegistered = errors.New("supernodes: the SuperLink already holds this key")

// Client calls a SuperLink's Control API.
type Client struct {
	control flwrpb.ControlClient
}

// NewClient returns a Client on conn (transport and call credentials are
// conn's).
func NewClient(conn grpc.ClientConnInterface) *Client {
	return &Client{control: flwrpb.NewControlClient(conn)}
}

// Node is a SuperNode as the SuperLink lists it.
type Node struct {
	// ID is the node id. JSON holds it as a decimal string,
	// "node_id": "18446744073709551615", as flwr supernode ls --format json
	// prints node-id (Flower 1.25, 1.27): Flower's node ids are random
	// 64-bit numbers, and a JSON number above 2^53 comes out changed in
	// JavaScript and jq. UnmarshalJSON also reads the number nodekeys
	// wrote before.
	ID uint64 `json:"node_id,string"`
	// Fingerprint is the key's SHA256: fingerprint, "" for a key that does
	// not parse.
	Fingerprint  string `json:"fingerprint"`
	Status       string `json:"status"`
	Owner        string `json:"owner,omitempty"`
	RegisteredAt string `json:"registered_at,omitempty"`
	// Unregistered marks a burned key: it can never be registered again.
	Unregistered bool   `json:"unregistered"`
	PEM          []byte `json:"-"`
}

// UnmarshalJSON reads a Node, its node_id a decimal string or a number.
func (n *Node) UnmarshalJSON(b []byte) error {
	type plain Node // without this method
	v := struct {
		*plain
		ID json.RawMessage `json:"node_id"` // shallower: wins over plain's
	}{plain: (*plain)(n)}
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	return readNodeID(v.ID, &n.ID)
}

// readNodeID sets *id from a node id in JSON: a decimal string (as
// nodekeys writes it) or a number (as nodekeys wrote it before, and
// Flower's flwr supernode register --format json prints it); absent or
// null leaves it.
func readNodeID(raw json.RawMessage, id *uint64) error {
	if raw == nil || string(raw) == "null" {
		return nil
	}
	s := string(raw)
	if raw[0] == '"' {
		if err := json.Unmarshal(raw, &s); err != nil {
			return err
		}
	}
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return fmt.Errorf("supernodes: node_id %s is not a node id (a decimal 64-bit number)", raw)
	}
	*id = v
	return nil
}

// Register registers the key whose PEM SubjectPublicKeyInfo is pem and
// returns its node id.
func (c *Client) Register(ctx context.Context, pem []byte) (uint64, error) {
	out, err := c.control.RegisterNode(ctx, &flwrpb.RegisterNodeRequest{PublicKey: pem})
	if err != nil {
		if st, ok := status.FromError(err); ok && st.Code() == codes.FailedPrecondition &&
			strings.Contains(strings.ToLower(st.Message()), "already in use") {
			return 0, ErrAlreadyRegistered
		}
		return 0, err
	}
	if out.NodeId == nil {
		return 0, errors.New("supernodes: the SuperLink registered the key but sent no node id")
	}
	return out.GetNodeId(), nil
}

// Unregister unregisters a node. Its key is burned from then on.
func (c *Client) Unregister(ctx context.Context, id uint64) error {
	_, err := c.control.UnregisterNode(ctx, &flwrpb.UnregisterNodeRequest{NodeId: id})
	return err
}

// List returns the SuperLink's nodes, burned ones included.
func (c *Client) List(ctx context.Context) ([]Node, error) {
	out, err := c.control.ListNodes(ctx, &flwrpb.ListNodesRequest{})
	if err != nil {
		return nil, err
	}
	nodes := make([]Node, 0, len(out.NodesInfo))
	for _, n := range out.NodesInfo {
		nodes = append(nodes, Node{
			ID: n.NodeId, Fingerprint: fingerprintPEM(n.PublicKey), Status: n.Status, Owner: n.OwnerName,
			RegisteredAt: n.RegisteredAt, Unregistered: n.UnregisteredAt != nil || n.Status == "unregistered",
			PEM: n.PublicKey,
		})
	}
	return nodes, nil
}

// fingerprintPEM is the SHA256: fingerprint of a PEM public key, or "".
func fingerprintPEM(pem []byte) string {
	k, err := keys.ParsePEMPublicKey(pem)
	if err != nil {
		return ""
	}
	return k.Fingerprint()
}
