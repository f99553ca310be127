package saga

import "github.com/idgen/idgen/shared/registry"

// Deadline compensations. An ID issued with a deadline is compensated once
// it passes, by whichever comes first: the deadline sweeper
// (functions/sweeper, ReasonTimeout) or a commit that comes at or after the
// deadline (functions/httpapi, ReasonDeadline), both as ActorSystem. Both
// are the registry's compare-and-set from pending, so exactly one applies.
// The reasons keep their audit entries apart: the sweeper audits only the
// compensations with ReasonTimeout, a late commit only those with
// ReasonDeadline, each through Once with marks of its own key space, so
// each deadline compensation has one entry.
const (
	// ReasonDeadline is the reason of a compensation made by a late commit.
	ReasonDeadline = "deadline"
	// ReasonTimeout is the reason of the sweeper's compensations.
	ReasonTimeout = "timeout"
	// ActorSystem is the actor of both.
	ActorSystem = registry.ActorSystem
)
