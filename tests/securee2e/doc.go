// Package securee2e holds process-level tests of idgen with every security
// feature on at once: real `idgen serve` processes (built once by TestMain)
// serving HTTPS only (--tls-cert, and mTLS with --tls-client-ca), verifying
// JWTs (ES256 public key or a JWKS file, with issuer and audience), talking
// TLS to a real 3-node ZooKeeper ensemble (secureClientPort, client
// certificate, digest ACL user) and TLS to a real Redis (CA, client
// certificate, ACL user, password from a file); and `idgen compensate`
// consuming failure events over the same Redis TLS connection.
//
// Every test checks invariants from the outside: no two IDs returned share
// (shard, counter); every ID returned is registered (read from Redis over
// TLS); states are exactly those the test drove; every znode idgen created
// carries the digest ACL; bad credentials (plain HTTP, TLS 1.1, no client
// certificate, a wrong audience, a missing scope, a removed signing key)
// never get an ID or change a state; the audit log names the token's
// subject as the actor of each transition. Timing is only ever waited for
// (generous deadlines for a busy two-core box), never asserted tightly.
//
// The tests share one ZooKeeper ensemble with TLS (started on first use,
// closed by TestMain); each uses a ZooKeeper root and a Redis of its own,
// one after the other (run the package with -p 1). An instance's stderr is
// shown when its test fails, or always with SECUREE2E_LOGS=1.
package securee2e
