package audit

import (
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
)

// ActionAuditCheckpoint is the action of a checkpoint line.
const ActionAuditCheckpoint = "audit.checkpoint"

// Checkpoint errors.
var (
	// ErrBadSignature: the signature of a checkpoint does not verify.
	ErrBadSignature = errors.New("audit: checkpoint signature does not verify")
	// ErrOtherKey: a checkpoint names a key other than the one given.
	ErrOtherKey = errors.New("audit: checkpoint signed by another key")
)

// Checkpoint is a signed statement that the chain Writer, up to its line
// Seq, ends in the line whose SHA-256 is Hash. It commits to every line
// before it: changing, removing, inserting or reordering any of them
// changes Hash. A Log writes one as a line of its own (action
// audit.checkpoint, the statement under "checkpoint"), which is itself the
// line Seq+1 of the chain, and hands it to Settings.Checkpoint.
type Checkpoint struct {
	Writer string `json:"writer"`
	Seq    uint64 `json:"seq"`
	Hash   string `json:"hash"` // hex SHA-256 of line Seq
	Time   string `json:"time"` // UTC, milliseconds
	KeyID  string `json:"key_id"`
	Sig    string `json:"sig"` // base64 Ed25519 signature of signed()
}

// signed is the message a checkpoint's signature covers: a JSON array,
// so that no two checkpoints share one.
func (c Checkpoint) signed() []byte {
	b, _ := json.Marshal([]any{"idgen-audit-checkpoint/1", c.Writer, c.Seq, c.Hash, c.Time, c.KeyID})
	return b
}

// Verify checks c's signature with pub. Errors: ErrOtherKey when c names
// another key than pub's KeyID; ErrBadSignature.
func (c Checkpoint) Verify(pub ed25519.PublicKey) error {
	if id := KeyID(pub); c.KeyID != id {
		return fmt.Errorf("%w: %q, not %q", ErrOtherKey, c.KeyID, id)
	}
	sig, err := base64.StdEncoding.DecodeString(c.Sig)
	if err != nil || !ed25519.Verify(pub, c.signed(), sig) {
		return ErrBadSignature
	}
	return nil
}

// sign fills in KeyID and Sig.
func (c *Checkpoint) sign(key ed25519.PrivateKey, keyID string) {
	c.KeyID = keyID
	c.Sig = base64.StdEncoding.EncodeToString(ed25519.Sign(key, c.signed()))
}

// KeyID names a public key: the hex of the first 8 bytes of its SHA-256.
func KeyID(pub ed25519.PublicKey) string {
	sum := sha256.Sum256(pub)
	return hex.EncodeToString(sum[:8])
}

// MarshalSigningKey is key as a PEM PKCS#8 "PRIVATE KEY" block.
func MarshalSigningKey(key ed25519.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// MarshalPublicKey is pub as a PEM PKIX "PUBLIC KEY" block.
func MarshalPublicKey(pub ed25519.PublicKey) ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), nil
}

// LoadSigningKey reads an Ed25519 private key from a PEM PKCS#8 file
// (`idgen keygen` writes one). Errors: the file cannot be read, or holds
// no such key.
func LoadSigningKey(path string) (ed25519.PrivateKey, error) {
	der, err := readPEM(path, "PRIVATE KEY")
	if err != nil {
		return nil, err
	}
	return parseKey[ed25519.PrivateKey](path, der, x509.ParsePKCS8PrivateKey)
}

// LoadPublicKey reads an Ed25519 public key from a PEM PKIX file, or
// derives it from a private key file. Errors: the file cannot be read, or
// holds no such key.
func LoadPublicKey(path string) (ed25519.PublicKey, error) {
	if der, err := readPEM(path, "PUBLIC KEY"); err == nil {
		return parseKey[ed25519.PublicKey](path, der, x509.ParsePKIXPublicKey)
	}
	key, err := LoadSigningKey(path)
	if err != nil {
		return nil, err
	}
	return key.Public().(ed25519.PublicKey), nil
}

// parseKey is the key that parse reads from der, a block of the file at
// path, if it is a K (an Ed25519 key of the kind the caller loads).
func parseKey[K any](path string, der []byte, parse func([]byte) (any, error)) (K, error) {
	var zero K
	k, err := parse(der)
	if err != nil {
		return zero, fmt.Errorf("audit: %s: %w", path, err)
	}
	key, ok := k.(K)
	if !ok {
		return zero, fmt.Errorf("audit: %s: not an Ed25519 key", path)
	}
	return key, nil
}

// readPEM is the first block of type typ in the file at path.
func readPEM(path, typ string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			return nil, fmt.Errorf("audit: %s: no PEM %s block", path, typ)
		}
		if blk.Type == typ {
			return blk.Bytes, nil
		}
	}
}
