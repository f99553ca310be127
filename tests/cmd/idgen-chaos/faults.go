package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/idgen/idgen/shared/platform/backoff"

	"github.com/idgen/idgen/functions/failurestream"
	"github.com/idgen/idgen/harness/redisharness"
)

// Fault 1: idgen-a is SIGKILLed mid-load and restarted (same address, data
// directory and ZooKeeper root). HAProxy retries what it had in flight
// elsewhere (empty response) and skips it until it is ready again.
func faultKillIdgen(ctx context.Context, r *run, w *window) error {
	in := r.c.inst(instA)
	if err := in.Kill(); err != nil {
		return err
	}
	w.note("%s SIGKILLed", in.name)
	backoff.Sleep(ctx, r.cfg.KillHold)
	t := time.Now()
	if err := in.Start(ctx, r.c.client, readyTimeout); err != nil {
		return err
	}
	w.note("restarted, ready in %v", time.Since(t).Round(time.Millisecond))
	return nil
}

// Fault 2: idgen-b is frozen (SIGSTOP) past its ZooKeeper session timeout,
// then thawed: its session has expired and its slot may be anyone's, so it
// must fence itself by its lease and claim a new slot before issuing.
func faultFreezeIdgen(ctx context.Context, r *run, w *window) error {
	in := r.c.inst(instB)
	if err := in.Freeze(); err != nil {
		return err
	}
	hold := r.cfg.Session + r.cfg.FreezeExtra
	w.note("%s frozen %v (session timeout %v)", in.name, hold, r.cfg.Session)
	backoff.Sleep(ctx, hold)
	return in.Thaw()
}

// Fault 3: the ZooKeeper leader is SIGKILLed; the ensemble elects another
// and the old one comes back. Claimed ranges carry the instances across.
func faultKillZKLeader(ctx context.Context, r *run, w *window) error {
	zk := r.c.zk
	leader, err := zk.Leader(ctx)
	if err != nil {
		return err
	}
	if err := zk.Kill(leader); err != nil {
		return err
	}
	backoff.Sleep(ctx, r.cfg.LeaderHold)
	rctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	if err := zk.Restart(rctx, leader); err != nil {
		return fmt.Errorf("restart ZooKeeper server %d: %w", leader, err)
	}
	if err := zk.WaitQuorum(rctx); err != nil {
		return err
	}
	now, _ := zk.Leader(rctx)
	w.note("leader zk%d killed, back after %v; leader now zk%d", leader, r.cfg.LeaderHold, now)
	return nil
}

// Fault 4: two of three ZooKeeper servers are killed (the leader is left
// alone, without quorum) and restarted. Instances issue from claimed ranges
// within their lease, then refuse (503); once every lease must have run out
// nothing may be issued (a quiet interval) until the quorum is back.
func faultQuorumLoss(ctx context.Context, r *run, w *window) error {
	zk := r.c.zk
	leader, err := zk.Leader(ctx)
	if err != nil {
		return err
	}
	var killed []int
	for i := range 3 {
		if i != leader {
			killed = append(killed, i)
		}
	}
	t0 := time.Now()
	for _, i := range killed {
		if err := zk.Kill(i); err != nil {
			return err
		}
	}
	backoff.Sleep(ctx, r.cfg.QuorumHold)
	restart := time.Now()
	// The lone leader may keep sessions for syncLimit (2 s) after losing
	// its followers; each lease then runs out within 2/3 session timeout.
	r.addQuiet(quiet{from: t0.Add(2*time.Second + r.lease() + quietMargin), to: restart, why: "no ZooKeeper quorum: every worker lease has run out"})
	rctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	errs := make([]error, len(killed))
	var wg sync.WaitGroup
	for j, i := range killed {
		wg.Go(func() { errs[j] = zk.Restart(rctx, i) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	if err := zk.WaitQuorum(rctx); err != nil {
		return err
	}
	w.note("zk%d and zk%d down %v; quorum back %v after the restart began", killed[0], killed[1], restart.Sub(t0).Round(time.Millisecond), time.Since(restart).Round(time.Millisecond))
	return nil
}

// quietMargin is added to lease bounds before a 200 counts as wrong: the
// bound itself is exact, the margin absorbs scheduling on a busy box.
const quietMargin = 4 * time.Second

// Fault 5: idgen-b is cut off from ZooKeeper (its proxy drops everything;
// the ensemble keeps its quorum), first shorter than the session timeout
// (the session survives), then longer (it expires: the instance must have
// fenced itself by its lease, then re-claims a slot after the heal). Direct
// probes watch the cut-off instance.
func faultPartition(ctx context.Context, r *run, w *window) error {
	in := r.c.inst(instB)
	pctx, stop := context.WithCancel(ctx)
	probes := r.d.directLoad(pctx, in, 1, 0, 5)
	defer func() { stop(); probes.Wait() }()

	in.zk.Partition()
	backoff.Sleep(ctx, r.cfg.ShortPartition)
	in.zk.Heal()
	healed := time.Now()
	at, err := r.waitRecovered(ctx, healed, r.cfg.Recovery)
	if err != nil {
		return fmt.Errorf("after the short partition: %w", err)
	}
	w.note("%v partition healed, recovered in %v", r.cfg.ShortPartition, at.Sub(healed).Round(time.Millisecond))

	t0 := time.Now()
	in.zk.Partition()
	hold := r.cfg.Session + r.cfg.LongPartitionExtra
	backoff.Sleep(ctx, hold)
	heal := time.Now()
	in.zk.Heal()
	// Its lease ran out at most 2/3 session timeout after its last answer
	// from ZooKeeper, which came before the partition.
	r.addQuiet(quiet{from: t0.Add(r.lease() + time.Second), to: heal, who: in.name, why: "partitioned from ZooKeeper past its lease"})
	w.note("then %v partition (session %v) healed", hold, r.cfg.Session)
	return nil
}

// Fault 6: the ZooKeeper proxy of idgen-c swallows the replies of range
// claims (setData commits, its reply is lost, the connection is cut) while
// a direct load makes idgen-c claim ranges often. The allocator must tell
// by re-reading whether each lost write was its own.
func faultLostReplies(ctx context.Context, r *run, w *window) error {
	in := r.c.inst(instC)
	before, _ := r.c.metric(ctx, in, "idgen_zookeeper_lost_replies_total")
	in.zk.ArmSetDrop(r.cfg.LostReplies, 300*time.Millisecond)
	lctx, stop := context.WithCancel(ctx)
	load := r.d.directLoad(lctx, in, 4, 1000, r.cfg.DirectRate)
	deadline := time.Now().Add(r.cfg.LostReplyWindow)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		if landed, refused := in.zk.Swallowed(); landed+refused >= r.cfg.LostReplies {
			break
		}
		backoff.Sleep(ctx, 100*time.Millisecond)
	}
	in.zk.Disarm()
	backoff.Sleep(ctx, time.Second)
	stop()
	load.Wait()
	landed, refused := in.zk.Swallowed()
	after, _ := r.c.metric(ctx, in, "idgen_zookeeper_lost_replies_total")
	w.note("%d setData replies swallowed (%d writes had landed, %d refused); allocator counted %.0f lost replies", landed+refused, landed, refused, after-before)
	if landed+refused == 0 {
		return errors.New("no range claim happened during the window: no reply lost")
	}
	return nil
}

// Fault 7: the Redis primary is SIGKILLed; the Sentinels promote the
// replica. It has no replica of its own, so durable writes cannot be
// acknowledged (no 200) until the old primary is restarted and rejoins as
// its replica.
func faultRedisFailover(ctx context.Context, r *run, w *window) error {
	g := r.c.redis
	old, err := g.KillPrimary()
	if err != nil {
		return err
	}
	t0 := time.Now()
	fctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	newAddr, err := g.WaitFailover(fctx, old.Addr())
	if err != nil {
		return err
	}
	w.note("%s killed; Sentinels promoted %s in %v", old.Name(), newAddr, time.Since(t0).Round(time.Millisecond))
	backoff.Sleep(ctx, 2*time.Second)
	restart := time.Now()
	r.addQuiet(quiet{from: t0, to: restart, why: "Redis primary dead, then the promoted one without a replica: nothing can be acknowledged durably"})
	if err := old.Restart(fctx); err != nil {
		return err
	}
	w.note("old primary restarted as a replica")
	// idgen-c's link (a plain address) must have followed the master.
	moved := false
	for deadline := time.Now().Add(10 * time.Second); !moved && time.Now().Before(deadline); backoff.Sleep(ctx, 100*time.Millisecond) {
		moved = r.c.link.Upstream() == newAddr
	}
	if !moved {
		return fmt.Errorf("the Redis link of %s still forwards to %s, not the new master %s", instC, r.c.link.Upstream(), newAddr)
	}
	return nil
}

// Fault 8: Redis is unavailable. First the replica alone is frozen for a
// few seconds: the primary still takes writes, but no durable write can be
// acknowledged (WAIT 1 times out after the write was applied: the
// ambiguous outcome). Then every Redis process (data nodes and Sentinels)
// is frozen for RedisDown: nothing can be registered. No 200 in either
// interval. Freezing the Sentinels too keeps them from failing over.
func faultRedisDown(ctx context.Context, r *run, w *window) error {
	g := r.c.redis
	primary, replicas := g.Primary(), g.Replicas()
	var frozen []*redisharness.Server
	defer func() {
		for _, s := range frozen {
			_ = s.Cont()
		}
	}()
	// frozenFor freezes ss for d, a quiet period for why, then thaws every
	// frozen process; one left frozen by an error is thawed on return.
	frozenFor := func(d time.Duration, why string, ss ...*redisharness.Server) error {
		for _, s := range ss {
			if err := s.Stop(); err != nil {
				return err
			}
			frozen = append(frozen, s)
		}
		from := time.Now()
		backoff.Sleep(ctx, d)
		r.addQuiet(quiet{from: from, to: time.Now(), why: why})
		for _, s := range frozen {
			if err := s.Cont(); err != nil {
				return err
			}
		}
		frozen = nil
		return nil
	}
	if err := frozenFor(r.cfg.ReplicaDown, "the only replica frozen: WAIT 1 cannot succeed", replicas...); err != nil {
		return err
	}
	backoff.Sleep(ctx, 2*time.Second)

	all := append([]*redisharness.Server{primary}, replicas...)
	all = append(all, g.Sentinels()...)
	if err := frozenFor(r.cfg.RedisDown, "every Redis process frozen", all...); err != nil {
		return err
	}
	w.note("replica frozen %v, then all %d Redis processes frozen %v", r.cfg.ReplicaDown, len(all), r.cfg.RedisDown)
	return nil
}

// Fault 9: a burst of failure events is sent and compensate-1 is SIGKILLed
// while it holds some of them read but not acknowledged; compensate-2 takes
// them over after --claim-idle, and compensate-1 comes back. Every event
// must be applied once in effect and audited once (checked at the end).
func faultKillWorker(ctx context.Context, r *run, w *window) error {
	victim := r.c.workers[0]
	for attempt := 1; attempt <= 3; attempt++ {
		ids := r.l.pick(r.cfg.WorkerBurst, func(rec idRecord) bool { return !rec.deadline && rec.commit == 0 && rec.event == 0 })
		if len(ids) == 0 {
			return errors.New("no pending ID to compensate")
		}
		for _, id := range ids {
			r.ev.Send(id, false)
		}
		held, err := r.killWithPending(ctx, victim)
		if err != nil {
			return err
		}
		if held > 0 {
			w.note("%s SIGKILLed holding %d unacknowledged events (burst of %d, attempt %d)", victim.name, held, len(ids), attempt)
			backoff.Sleep(ctx, 3*time.Second)
			if err := victim.Start(ctx, r.c.client, readyTimeout); err != nil {
				return err
			}
			return r.waitDrained(ctx, r.cfg.Recovery)
		}
		if err := victim.Start(ctx, r.c.client, readyTimeout); err != nil {
			return err
		}
	}
	return errors.New("the worker never held events when it was killed")
}

// killWithPending polls the victim's pending entries and SIGKILLs it as
// soon as it holds a batch of them (or, after 5 s, any); it returns how
// many it held after the kill.
func (r *run) killWithPending(ctx context.Context, victim *process) (int64, error) {
	t0 := time.Now()
	deadline := t0.Add(20 * time.Second)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		if n := r.consumerPending(ctx, victim.name); n >= 16 || n > 0 && time.Since(t0) > 5*time.Second {
			if err := victim.Kill(); err != nil {
				return 0, err
			}
			return r.consumerPending(ctx, victim.name), nil
		}
		backoff.Sleep(ctx, 2*time.Millisecond)
	}
	return 0, victim.Kill()
}

func (r *run) consumerPending(ctx context.Context, name string) int64 {
	cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	cs, err := r.ev.rdb.XInfoConsumers(cctx, failurestream.DefaultStream, failurestream.DefaultGroup).Result()
	if err != nil {
		return 0
	}
	for _, c := range cs {
		if c.Name == name {
			return c.Pending
		}
	}
	return 0
}

// Fault 10: the Redis link of idgen-c (toxiproxy) gets latency with jitter,
// then loses packets (a share of connections stall and time out, some are
// reset), under a direct load on idgen-c.
func faultRedisLink(ctx context.Context, r *run, w *window) error {
	in := r.c.inst(instC)
	lctx, stop := context.WithCancel(ctx)
	load := r.d.directLoad(lctx, in, 4, 10, 2000)
	defer func() { stop(); load.Wait() }()
	link := r.c.link
	if err := link.Latency(150*time.Millisecond, 100*time.Millisecond); err != nil {
		return err
	}
	backoff.Sleep(ctx, r.cfg.LinkPhase)
	if err := link.Clear(); err != nil {
		return err
	}
	if err := link.Loss(0.3, 2*time.Second); err != nil {
		return err
	}
	if err := link.Latency(20*time.Millisecond, 20*time.Millisecond); err != nil {
		return err
	}
	backoff.Sleep(ctx, r.cfg.LinkPhase)
	if err := link.Clear(); err != nil {
		return err
	}
	w.note("%v of 150±100 ms latency, then %v of 30%% stalled connections (+10%% reset, 20±20 ms)", r.cfg.LinkPhase, r.cfg.LinkPhase)
	return nil
}

// Fault 11: the wall clock of idgen-a steps back (the test-only fault clock
// of cmd/idgen) while it issues, then idgen-a restarts with its clock
// still behind the timestamps it issued before (and likely the same worker
// slot), then the clock steps forward again. IDs must stay unique and
// registered; within one life timestamps never go back (checked at the end
// on the direct streams).
func faultClockStep(ctx context.Context, r *run, w *window) error {
	in := r.c.inst(instA)
	// The direct load stops around the restart: each stream's answers then
	// all come from the life it is labelled with.
	stream := func() func() {
		lctx, stop := context.WithCancel(ctx)
		load := r.d.directLoad(lctx, in, 2, 5, 500)
		return func() { stop(); load.Wait() }
	}
	stopLoad := stream()
	backoff.Sleep(ctx, time.Second)
	step := r.cfg.ClockStep
	if err := os.WriteFile(r.c.clockFile, []byte(step.String()), 0o644); err != nil {
		stopLoad()
		return err
	}
	backoff.Sleep(ctx, r.cfg.ClockHold)
	stopLoad()
	if err := in.Terminate(20 * time.Second); err != nil {
		return err
	}
	if err := in.Start(ctx, r.c.client, readyTimeout); err != nil {
		return err
	}
	stopLoad = stream()
	defer func() { stopLoad() }()
	backoff.Sleep(ctx, r.cfg.ClockHold)
	if err := os.WriteFile(r.c.clockFile, []byte("0s"), 0o644); err != nil {
		return err
	}
	backoff.Sleep(ctx, 2*time.Second)
	w.note("%s clock stepped %v for %v, restarted with it, stepped back to real time", in.name, step, r.cfg.ClockHold)
	// Evidence that the clock moved: the new life's first IDs are stamped
	// behind the last ones of the old life.
	life := in.Life()
	var lastOld, firstNew uint64
	for _, res := range r.l.resultsSince(w.from) {
		if res.via != in.name || res.ids == 0 {
			continue
		}
		switch res.life {
		case life - 1:
			lastOld = max(lastOld, res.maxTS)
		case life:
			if firstNew == 0 || res.minTS < firstNew {
				firstNew = res.minTS
			}
		}
	}
	if lastOld == 0 || firstNew == 0 || firstNew >= lastOld {
		return fmt.Errorf("the restarted instance did not stamp behind its previous life (last %d, first %d): the clock step was not observed", lastOld, firstNew)
	}
	w.note("life %d's first IDs stamped %v before life %d's last", life, time.Duration(int64(lastOld)-int64(firstNew))*time.Millisecond, life-1)
	return nil
}
