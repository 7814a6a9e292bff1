package conformance

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/kioskd/kioskd/devices/acceptor"
	"github.com/kioskd/kioskd/devices/acceptor/ssp"
	"github.com/kioskd/kioskd/hw-sim/pulsesim"
	"github.com/kioskd/kioskd/hw-sim/sspsim"
	"github.com/kioskd/kioskd/kiosk/session"
	"github.com/kioskd/kioskd/sync/wire"
)

// scenario is one row of the table: the same run and the same expected outcome for every
// driver configuration.
type scenario struct {
	name string
	// skip says, per protocol, why the scenario cannot apply to it.
	skip map[string]string
	// blocked names, per protocol, a bug in another package that stops the scenario (the
	// lead fixes it there; the scenario is ready for the fix).
	blocked map[string]string
	// crash: the scenario kills a host at one of the engine's crash points, which exist
	// only in kioskd_failpoints builds.
	crash bool
	run   func(r *rig)
}

// Reasons shared by several rows.
const (
	noEscrowPowerUp = "no escrow, no stack intent and no power-up report: an escrowless unit's note is in the cassette when it is reported (an interrupted pulse train is scenario 07)"
	noCassette      = "a pulse unit has no cassette sensing"
	noFraud         = "a pulse unit has no fraud detection: a note it takes is in the cassette and is credited"
	noStackerJam    = "a pulse unit's only fault signal is a stuck credit line (scenario 04 acceptor jam)"
	noRejects       = "a pulse unit reports no reject reasons: a note it refuses simply sends no pulses"
	sspFraudOnce    = "SSP reports FRAUD ATTEMPT once and rejects the note; the unit is at rest again at once (scenario 09_fraud)"
	noPowerUpReport = "a pulse unit reports nothing about a power cut: it has no power-up status"
	noSwapCheck     = "the protocol has no unit-swap detection (SSP only: GET SERIAL after a gap)"
)

// values lists the protocol's note values, smallest first.
func (r *rig) values() []int64 {
	var vs []int64
	for _, n := range r.p.denoms {
		vs = append(vs, n.ValueMinor)
	}
	slices.Sort(vs)
	return vs
}

func sum(vs ...int64) int64 {
	var s int64
	for _, v := range vs {
		s += v
	}
	return s
}

func scenarios() []scenario {
	sc := []scenario{
		{name: "01_accept_each_denomination", run: accept},
		{name: "02_return_over_limit", run: returnOverLimit},
		{name: "03_reject_reasons", skip: map[string]string{"pulse": noRejects}, run: rejectReasons},
		{name: "04_acceptor_jam", run: acceptorJam},
		{name: "04_stacker_jam_note_past_point_of_no_return", skip: map[string]string{"pulse": noStackerJam}, run: stackerJam},
		{name: "05_cassette_removed_replaced", skip: map[string]string{"pulse": noCassette}, run: cassetteRemoved},
		{name: "05_cassette_pulled_mid_stack", skip: map[string]string{"pulse": noCassette}, run: cassettePulledMidStack},
		{name: "05_cassette_full", skip: map[string]string{"pulse": noCassette}, run: cassetteFull},
		{name: "06_restart_power_up_note_in_acceptor", crash: true, skip: map[string]string{"pulse": noEscrowPowerUp}, run: func(r *rig) { powerUpWithNote(r, "acceptor") }},
		{name: "06_restart_power_up_note_in_stacker", crash: true, skip: map[string]string{"pulse": noEscrowPowerUp}, run: func(r *rig) { powerUpWithNote(r, "stacker") }},
		{name: "06_restart_power_up_note_in_stacker_unit_identified", skip: map[string]string{"pulse": noEscrowPowerUp}, run: identifiedAfterRecovery},
		{name: "06_restart_note_still_in_escrow", crash: true, skip: map[string]string{"pulse": noEscrowPowerUp}, run: restartNoteInEscrow},
		{name: "07_restart_before_credit_commit", crash: true, run: func(r *rig) { restartAtCredit(r, atBeforeCommit) }},
		{name: "07_restart_before_credit_commit_with_power_cut", crash: true, skip: map[string]string{"pulse": noPowerUpReport}, run: restartBeforeCommitPowerCut},
		{name: "07_restart_after_credit_commit", crash: true, run: func(r *rig) { restartAtCredit(r, atAfterCommit) }},
	}
	for _, k := range []string{"bad_crc", "no_reply", "garbage", "split", "slow", "late", "bad_count"} {
		skip := map[string]string{}
		for _, p := range protocols() {
			if !slices.Contains(p.faults, k) {
				skip[p.name] = fmt.Sprintf("the %s emulator has no %q fault", p.name, k)
				if p.name == "pulse" {
					skip[p.name] = "a pulse unit has no serial link; line noise is its only fault (garbage)"
				}
				if k == "bad_count" {
					skip[p.name] = "no eSSP counter without eSSP encryption"
				}
			}
		}
		sc = append(sc, scenario{name: "08_link_fault_" + k, skip: skip, run: func(r *rig) { linkFault(r, k) }})
	}
	sc = append(sc,
		scenario{name: "08_link_down_during_note", skip: map[string]string{"pulse": "a pulse unit has no link to lose"}, run: linkDown},
		scenario{name: "09_fraud", skip: map[string]string{"pulse": noFraud}, run: fraud},
		scenario{name: "09_fraud_latched_unit_out_of_service", skip: map[string]string{"pulse": noFraud,
			"ssp": sspFraudOnce, "essp": sspFraudOnce}, run: fraudLatched},
		scenario{name: "10_unit_swapped", skip: map[string]string{"id003": noSwapCheck, "ccnet": noSwapCheck, "pulse": noSwapCheck}, run: unitSwapped},
		// Beyond the list: what a technician and a customer do, and power cuts of the
		// unit alone.
		scenario{name: "11_technician_reset", run: technicianReset},
		scenario{name: "12_unit_power_cut_note_in_stacker", skip: map[string]string{"pulse": noPowerUpReport}, run: func(r *rig) { unitPowerCut(r, true) }},
		scenario{name: "12_unit_power_cut_empty_path", skip: map[string]string{"pulse": noPowerUpReport}, run: func(r *rig) { unitPowerCut(r, false) }},
		scenario{name: "12_unit_power_cut_note_in_stacker_storage_failing", skip: map[string]string{"pulse": noPowerUpReport}, run: unitPowerCutStorageFailing},
		scenario{name: "13_unit_failure_and_reset", skip: map[string]string{"pulse": "a pulse unit reports no failure"}, run: unitFailure},
		scenario{name: "14_finish_with_note_in_transit", run: finishInTransit},
	)
	return sc
}

// TestConformance runs the table on every driver configuration, each run in its own
// synctest bubble.
func TestConformance(t *testing.T) {
	for _, sc := range scenarios() {
		t.Run(sc.name, func(t *testing.T) {
			for _, p := range protocols() {
				t.Run(p.name, func(t *testing.T) {
					if why := sc.skip[p.name]; why != "" {
						t.Skip(why)
					}
					if bug := sc.blocked[p.name]; bug != "" {
						t.Skip("blocked: " + bug)
					}
					if sc.crash && !crashHooks {
						t.Skip("kills the host at the engine's crash points, built only with -tags kioskd_failpoints (make test runs this package so)")
					}
					t.Parallel()
					synctest.Test(t, func(t *testing.T) {
						r := newRig(t, p, unitOpts{})
						r.start()
						r.ready()
						sc.run(r)
					})
				})
			}
		})
	}
}

// 01: one note of each denomination, Finish: one top-up with their sum.
func accept(r *rig) {
	vals := r.values()
	r.open(1_000_000)
	var steps []step
	for _, v := range vals {
		r.feed(v)
		steps = append(steps, escrowOf(v, acceptor.Stack), creditOf(v), eventOf(acceptor.Stacked))
	}
	r.finish()
	r.expectTrace(0, steps...)
	r.expectNone("rejection", isEvent(acceptor.Rejected))
	r.expectNone("fault", func(e entry) bool { return e.call == "event" && e.kind.Fault() })
	if n := r.rec.count(isCredit); n != len(vals) {
		r.t.Errorf("%d credits reported for %d notes", n, len(vals))
	}
	r.check(outcome{credited: vals, topups: []topup{tp(wire.OutcomeComplete, 0, vals...)}})
}

// 02: a note that would take the session over its limit is not taken. An escrow unit is
// enabled only for what fits (the unit refuses the rest itself) and a note that no longer
// fits is returned from escrow by the host; an escrowless unit stays inhibited while its
// largest note would not fit, so it draws no note in.
func returnOverLimit(r *rig) {
	v := r.values()
	small, big := v[1], v[2]
	r.open(small + small/2)
	if r.p.escrowless {
		err := r.u.Insert(r.codeFor(v[0]))
		if !errors.Is(err, pulsesim.ErrInhibited) {
			r.t.Fatalf("a note inserted into an escrowless unit whose largest note does not fit: %v, want the unit inhibited", err)
		}
		r.cur().e.Cancel()
		r.waitState(session.Idle)
		r.expectNone("credit", isCredit)
		r.check(outcome{})
		return
	}
	r.insert(big)
	r.eventually("the unit to refuse a denomination it was not enabled for", func() bool { return r.rec.count(isEvent(acceptor.Rejected)) == 1 })
	r.feed(small)
	returned := r.rec.count(isEvent(acceptor.Returned))
	r.insert(small)
	r.eventually("the note over the limit to come back", func() bool { return r.rec.count(isEvent(acceptor.Returned)) > returned })
	r.finish()
	rejectedInhibited := step{"rejected inhibited", func(e entry) bool {
		return e.call == "event" && e.kind == acceptor.Rejected && e.reason == acceptor.RejectInhibited
	}}
	r.expectTrace(0, rejectedInhibited, escrowOf(small, acceptor.Stack), creditOf(small), escrowOf(small, acceptor.Return), eventOf(acceptor.Returned))
	r.expectNone("escrow of the disabled denomination", func(e entry) bool { return e.call == "escrow" && e.note.ValueMinor == big })
	r.check(outcome{credited: []int64{small}, refused: 1, topups: []topup{tp(wire.OutcomeComplete, 0, small)}})
}

// 03: every raw reject code the driver maps to a reason reaches the engine as Rejected with
// that reason, and no money moves.
func rejectReasons(r *rig) {
	var codes []byte
	for c := 0; c <= 0xFF; c++ {
		if r.p.rejectReason(byte(c)) != acceptor.RejectUnknown {
			codes = append(codes, byte(c))
		}
	}
	if len(codes) == 0 {
		r.t.Fatal("the driver maps no reject code")
	}
	r.t.Logf("%s: %d reject codes map to a reason: % x", r.p.name, len(codes), codes)
	r.open(1_000_000)
	v := r.values()[0]
	for _, c := range codes {
		want := r.p.rejectReason(c)
		n := len(r.rec.snapshot())
		r.u.RejectNext(int(c))
		r.insert(v)
		var got entry
		r.eventually(fmt.Sprintf("the reject of code %#x", c), func() bool {
			for _, e := range r.rec.snapshot()[n:] {
				// A unit's "rejected by host" is, in the model, the host's own return.
				if e.call == "event" && (e.kind == acceptor.Rejected || (want == acceptor.RejectHostReturn && e.kind == acceptor.Returned)) {
					got = e
					return true
				}
			}
			return false
		})
		switch {
		case got.kind == acceptor.Returned:
		case got.reason != want || got.code != int(c):
			r.t.Errorf("%s: reject code %#x reached the engine as %v, want reason %v code %#x", r.p.name, c, got, want, c)
		}
	}
	r.cur().e.Cancel()
	r.waitState(session.Idle)
	r.expectNone("escrow", func(e entry) bool { return e.call == "escrow" })
	r.expectNone("credit", isCredit)
	r.check(outcome{})
}

// jamEvent is what a jam in the stacker is reported as.
func (r *rig) jamEvent(stacker bool) acceptor.Kind {
	if stacker && r.p.stackerJam {
		return acceptor.StackerJam
	}
	return acceptor.AcceptorJam
}

// 04: a jam in the acceptor with a note in the head: the kiosk goes out of service and the
// session closes; when the jam is cleared the note is out (never counted) and the kiosk
// serves again.
func acceptorJam(r *rig) {
	v := r.values()
	r.open(1_000_000)
	if r.p.escrowless {
		r.u.Jam(false) // a stuck credit line
	} else {
		jammed := false
		r.rec.setHooks(interceptors{event: func(e acceptor.Event) {
			if e.Kind == acceptor.Accepting && !jammed {
				jammed = true
				r.u.Jam(false)
			}
		}})
		r.insert(v[0])
	}
	r.eventually("the jam report", func() bool { return r.rec.count(isEvent(acceptor.AcceptorJam)) > 0 })
	r.rec.setHooks(interceptors{})
	r.waitState(session.OutOfService) // the session closed on the way (no money: cancelled)
	r.u.ClearJam()
	r.waitState(session.Idle)
	r.open(1_000_000)
	r.feed(v[2])
	r.finish()
	r.expectTrace(0, eventOf(acceptor.AcceptorJam), eventAny(acceptor.Idle, acceptor.Disabled), creditOf(v[2]))
	r.expectNone("escrow of the jammed note", func(e entry) bool { return e.call == "escrow" && e.note.ValueMinor == v[0] })
	r.check(outcome{credited: []int64{v[2]}, topups: []topup{tp(wire.OutcomeComplete, 0, v[2])}})
}

// 04: a jam in the stacker with the note past the point of no return (stack commanded):
// the session closes as interrupted with the note an uncertain item; clearing the jam
// pushes the note into the cassette, so the ground truth has it and it is accounted for
// exactly once.
func stackerJam(r *rig) {
	v := r.values()
	r.open(1_000_000)
	r.feed(v[1])
	jammed := false
	r.rec.setHooks(interceptors{event: func(e acceptor.Event) {
		if e.Kind == acceptor.Stacking && !jammed {
			jammed = true
			r.u.Jam(true)
		}
	}})
	r.insert(v[2])
	want := r.jamEvent(true)
	r.eventually("the jam report", func() bool { return r.rec.count(isEvent(want)) > 0 })
	r.eventually("the session to stop", func() bool { return r.state() != session.Accepting.String() })
	r.rec.setHooks(interceptors{})
	r.eventually("the session to close", func() bool { return r.prn.count() == 1 })
	r.waitState(session.OutOfService)
	r.u.ClearJam()
	r.waitState(session.Idle)
	r.open(1_000_000)
	r.feed(v[0])
	r.finish()
	r.expectTrace(0, creditOf(v[1]), escrowOf(v[2], acceptor.Stack), eventOf(want), creditOf(v[0]))
	r.check(outcome{credited: []int64{v[1], v[0]}, uncertain: []int64{v[2]}, resolved: []string{"uncertain"},
		topups: []topup{tp(wire.OutcomeInterrupted, 1, v[1]), tp(wire.OutcomeComplete, 0, v[0])}})
}

// 05: the cassette taken out and put back: out of service meanwhile, then the next note
// goes into the new cassette and is credited.
func cassetteRemoved(r *rig) {
	v := r.values()
	r.open(1_000_000)
	r.feed(v[2])
	r.finish()
	if err := r.u.PullCassette(); err != nil {
		r.t.Fatal(err)
	}
	r.eventually("the cassette removed report", func() bool { return r.rec.count(isEvent(acceptor.CassetteRemoved)) > 0 })
	r.waitState(session.OutOfService)
	if err := r.cur().e.Scan("IMW1.x"); !errors.Is(err, session.ErrBusy) {
		r.t.Errorf("scan while the cassette is out: %v, want ErrBusy", err)
	}
	if err := r.u.ReplaceCassette(); err != nil {
		r.t.Fatal(err)
	}
	r.waitState(session.Idle)
	r.open(1_000_000)
	r.feed(v[1])
	r.finish()
	r.expectTrace(0, creditOf(v[2]), eventOf(acceptor.CassetteRemoved), eventOf(acceptor.CassetteReplaced), creditOf(v[1]))
	if st := r.u.Stacked(); len(st) != 2 || st[0].Cassette != 1 || st[1].Cassette != 2 {
		r.t.Errorf("emulator cassettes %+v, want one note in the first and one in the second", st)
	}
	r.check(outcome{credited: []int64{v[2], v[1]}, topups: []topup{tp(wire.OutcomeComplete, 0, v[2]), tp(wire.OutcomeComplete, 0, v[1])}})
}

// 05: the cassette full: out of service until staff empty it (take it out, put it back).
func cassetteFull(r *rig) {
	v := r.values()
	r.open(1_000_000)
	r.feed(v[2])
	r.finish()
	r.u.SetCassetteFull(true)
	r.eventually("the cassette full report", func() bool { return r.rec.count(isEvent(acceptor.CassetteFull)) > 0 })
	r.waitState(session.OutOfService)
	if err := r.u.PullCassette(); err != nil {
		r.t.Fatal(err)
	}
	r.eventually("the cassette removed report", func() bool { return r.rec.count(isEvent(acceptor.CassetteRemoved)) > 0 })
	if err := r.u.ReplaceCassette(); err != nil {
		r.t.Fatal(err)
	}
	r.waitState(session.Idle)
	r.open(1_000_000)
	r.feed(v[1])
	r.finish()
	r.expectTrace(0, creditOf(v[2]), eventOf(acceptor.CassetteFull), eventOf(acceptor.CassetteRemoved), creditOf(v[1]))
	r.check(outcome{credited: []int64{v[2], v[1]}, topups: []topup{tp(wire.OutcomeComplete, 0, v[2]), tp(wire.OutcomeComplete, 0, v[1])}})
}

// 06 (identity): after the recovery of a note in the stacker the new driver still reads
// the unit's identity (Identified, Info with the model or serial).
func identifiedAfterRecovery(r *rig) {
	powerUpWithNote(r, "stacker")
	r.expectTrace(2, eventOf(acceptor.Identified))
	if info := r.hosts[1].l.drv.Info(); info.Model == "" && info.Serial == "" {
		r.t.Errorf("%s: Info after the recovery %+v, want the unit's model or serial", r.p.name, info)
	}
}

// recovered is how many credit re-reports a power-up with one note in the stacker brings:
// one with CCNET's credit recovery, which the journal must recognise and not count.
func (r *rig) recovered() int {
	if r.p.creditRecovery {
		return 1
	}
	return 0
}

// crashDuring arms a crash of the current host at point, inserts a note of v, and waits
// until the host died there.
func (r *rig) crashDuring(point string, v int64) {
	r.t.Helper()
	if !crashHooks {
		r.t.Fatal("a crash row ran without the engine's crash points")
	}
	h := r.cur()
	h.armCrash(point)
	r.insert(v)
	h.awaitCrash()
}

// 06: the host dies right after journaling a stack intent; the unit loses power with the
// note in the acceptor head or in the stacker; a new host on the same journal resolves the
// intent from the unit's power-up report: returned (no credit) or stacked (credited once,
// even where the unit also reports the stacked note after its reset, CCNET's credit
// recovery), and closes the interrupted session.
func powerUpWithNote(r *rig, where string) {
	v := r.values()
	first, second := v[2], v[3]
	r.open(1_000_000)
	r.feed(first)
	r.crashDuring(atStackIntent, second)
	if err := r.u.PowerCycle(where); err != nil {
		r.t.Fatalf("power cycle with the note in the %s: %v", where, err)
	}
	r.start()
	r.ready()
	if where == "acceptor" {
		r.expectTrace(2, eventOf(acceptor.PowerUpNoteInAcceptor))
		r.check(outcome{credited: []int64{first}, resolved: []string{"returned"}, topups: []topup{tp(wire.OutcomeInterrupted, 0, first)}})
		return
	}
	r.expectTrace(2, eventOf(acceptor.PowerUpNoteInStacker))
	r.check(outcome{credited: []int64{first, second}, topups: []topup{tp(wire.OutcomeInterrupted, 0, first, second)},
		reReported: r.recovered()})
}

// 07: the host dies at the credit point, before or after the credit's commit, and before
// the unit got its acknowledgement. A unit that repeats an unacknowledged credit gets it
// credited exactly once by the new host; one that does not (reReports names why) leaves an
// uncertain item: never lost, never credited twice.
func restartAtCredit(r *rig, point string) {
	v := r.values()
	first, second := v[2], v[3]
	r.open(1_000_000)
	r.feed(first)
	r.crashDuring(point, second)
	r.start()
	r.ready()
	// An escrowless unit was enabled when the host died: the line stayed released with nobody
	// reading it, so the new host records one more uncertain item of unknown value, for a note
	// that may have gone in unrecorded (kiosk/journal, PulseLine).
	lineItem := 0
	if r.p.escrowless {
		lineItem = 1
	}
	switch {
	case point == atAfterCommit:
		want := outcome{credited: []int64{first, second}, topups: []topup{tp(wire.OutcomeInterrupted, lineItem, first, second)}}
		if lineItem > 0 {
			want.uncertain = []int64{0}
		}
		if r.p.reReports == "" {
			r.expectTrace(2, creditOf(0))
			want.reReported = 1 // acknowledged, not counted again
		}
		r.check(want)
	case r.p.reReports == "":
		r.expectTrace(2, creditOf(0))
		r.check(outcome{credited: []int64{first, second}, topups: []topup{tp(wire.OutcomeInterrupted, 0, first, second)}})
	case r.p.stackCounter:
		// The unit does not repeat the credit, but its stacked counter moved by one since the
		// baseline: recovery credits the note from that witness.
		r.t.Logf("%s: %s; settled by the unit's stacked counter", r.p.name, r.p.reReports)
		r.check(outcome{credited: []int64{first, second}, topups: []topup{tp(wire.OutcomeInterrupted, 0, first, second)}})
	default:
		r.t.Logf("%s: %s", r.p.name, r.p.reReports)
		want := outcome{credited: []int64{first}, uncertain: []int64{second}, resolved: []string{"uncertain"}, topups: []topup{tp(wire.OutcomeInterrupted, 1, first)}}
		if r.p.escrowless {
			// No stack intent: the journaled pulses of the cut train become the uncertain
			// item, of unknown value (a train's value is never guessed); the line left
			// enabled is one more.
			want.uncertain, want.resolved = []int64{0, 0}, nil
			want.topups = []topup{tp(wire.OutcomeInterrupted, 1+lineItem, first)}
		}
		r.check(want)
	}
}

// 08: one link fault during a note's journey, once around its escrow decision and once at
// its credit point: each note is credited exactly once and the driver goes on working.
func linkFault(r *rig, kind string) {
	var d time.Duration
	switch kind {
	case "slow": // just inside the driver's reply timeout
		d = r.p.replyTimeout * 8 / 10
	case "late": // past it: the driver re-sends, and the late reply must not confuse it
		d = r.p.replyTimeout * 3 / 2
	case "split":
		d = 5 * time.Millisecond
	}
	v := r.values()
	r.open(1_000_000)
	if r.p.escrowless {
		if err := r.u.Fault(kind, d); err != nil {
			r.t.Fatal(err)
		}
		r.feed(v[2])
		if err := r.u.Fault(kind, d); err != nil {
			r.t.Fatal(err)
		}
		r.feed(v[1])
	} else {
		var atEscrow, atCredit bool
		inject := func() {
			if err := r.u.Fault(kind, d); err != nil {
				r.t.Error(err)
			}
		}
		r.rec.setHooks(interceptors{
			escrow: func(n acceptor.Note) {
				if n.ValueMinor == v[2] && !atEscrow {
					atEscrow = true
					inject()
				}
			},
			credited: func(n acceptor.Note) {
				if n.ValueMinor == v[1] && !atCredit {
					atCredit = true
					inject()
				}
			},
		})
		r.feed(v[2])
		r.feed(v[1])
		r.rec.setHooks(interceptors{})
	}
	r.feed(v[0])
	r.finish()
	if n := r.u.pendingFaults(); n != 0 {
		r.t.Errorf("%d injected fault(s) never reached the line", n)
	}
	if n := r.rec.count(isCredit); n != 3 {
		r.t.Errorf("%d credits reported for 3 notes; trace:\n%s", n, r.traceText())
	}
	r.expectTrace(0, creditOf(v[2]), creditOf(v[1]), creditOf(v[0]))
	r.check(outcome{credited: []int64{v[2], v[1], v[0]}, topups: []topup{tp(wire.OutcomeComplete, 0, v[0], v[1], v[2])}})
}

// 09: a cheat attempt with a note in the path: a Fraud event and an alarm, no credit. A
// technician's reset brings the unit back.
func fraud(r *rig) {
	v := r.values()
	r.open(1_000_000)
	cheated := false
	r.rec.setHooks(interceptors{event: func(e acceptor.Event) {
		if e.Kind == acceptor.Accepting && !cheated {
			cheated = true
			r.u.Cheat()
		}
	}})
	r.insert(v[2])
	r.eventually("the fraud report", func() bool { return r.rec.count(isEvent(acceptor.Fraud)) > 0 })
	r.rec.setHooks(interceptors{})
	if !r.alarms.raised("acceptor_fraud") {
		r.t.Errorf("no acceptor_fraud alarm")
	}
	r.cur().e.Cancel()
	r.eventually("the session to end", func() bool { s := r.state(); return s == "idle" || s == "out_of_service" })
	// A unit that latches its cheat report (ID-003 CHEATED, CCNET 0x45 until RESET) takes
	// no note until a technician resets it; one that reports it once is back at rest.
	ctx := context.Background()
	if !r.atRestSince(isEvent(acceptor.Fraud)) {
		r.eventually("a technician reset", func() bool { return r.cur().l.drv.Reset(ctx) == nil })
	}
	// The kiosk stays out of service until the technician signs the cheat attempt off.
	r.waitState(session.OutOfService)
	r.signOffFraud(ctx)
	r.waitState(session.Idle)
	r.open(1_000_000)
	r.feed(v[1])
	r.finish()
	r.expectNone("credit of the cheat note", func(e entry) bool { return e.call == "credited" && e.note.ValueMinor == v[2] })
	r.check(outcome{credited: []int64{v[1]}, topups: []topup{tp(wire.OutcomeComplete, 0, v[1])}})
}

// 10: another unit on the line after a communication gap: Failure with CodeUnitSwapped, out
// of service, Enable refused, until a technician confirms the swap.
func unitSwapped(r *rig) {
	s := r.u.raw.(*sspsim.Sim)
	if err := r.u.Fault("no_reply", 0); err != nil {
		r.t.Fatal(err)
	}
	if err := s.SwapUnit(2_000_002); err != nil {
		r.t.Fatal(err)
	}
	swapped := func(e entry) bool {
		return e.call == "event" && e.kind == acceptor.Failure && e.code == ssp.CodeUnitSwapped
	}
	r.eventually("the unit-swap failure", func() bool { return r.rec.count(swapped) > 0 })
	r.waitState(session.OutOfService)
	drv := r.cur().l.drv.(*ssp.Driver)
	ctx := context.Background()
	if err := drv.Enable(ctx, []int{1}); !errors.Is(err, ssp.ErrUnitSwapped) {
		r.t.Errorf("Enable after a swap: %v, want ErrUnitSwapped", err)
	}
	if err := drv.ConfirmSwap(ctx); err != nil {
		r.t.Fatal(err)
	}
	r.waitState(session.Idle)
	v := r.values()
	r.open(1_000_000)
	r.feed(v[1])
	r.finish()
	r.check(outcome{credited: []int64{v[1]}, topups: []topup{tp(wire.OutcomeComplete, 0, v[1])}})
}

// atRestSince reports whether the unit reported Idle or Disabled after the last entry
// matching f.
func (r *rig) atRestSince(f func(entry) bool) bool {
	tr := r.rec.snapshot()
	last := -1
	for i, e := range tr {
		if f(e) {
			last = i
		}
	}
	for _, e := range tr[last+1:] {
		if e.call == "event" && (e.kind == acceptor.Idle || e.kind == acceptor.Disabled) {
			return true
		}
	}
	return false
}

// 11: a technician resets the unit (acceptor.Acceptor.Reset, the way to clear a fault): the
// unit restarts and comes back inhibited (a pulse unit is only inhibited), the engine stays
// in service and the next session's notes are credited.
func technicianReset(r *rig) {
	v := r.values()
	r.open(1_000_000)
	r.feed(v[1])
	r.finish()
	ctx := context.Background()
	if err := r.cur().l.drv.Reset(ctx); err != nil {
		r.t.Fatalf("reset: %v", err)
	}
	r.eventually("the unit to restart", func() bool { return r.atRestSince(func(e entry) bool { return e.call == "credited" }) })
	r.waitState(session.Idle)
	r.open(1_000_000)
	r.feed(v[2])
	r.finish()
	r.check(outcome{credited: []int64{v[1], v[2]}, topups: []topup{tp(wire.OutcomeComplete, 0, v[1]), tp(wire.OutcomeComplete, 0, v[2])}})
}

// 08: the line goes dead for seconds while a note is in escrow: CommLost stops service and
// closes the session, which waits for the note in transit; once the unit answers again the
// note is credited exactly once, into the interrupted session.
func linkDown(r *rig) {
	v := r.values()
	r.open(1_000_000)
	r.feed(v[1])
	down := false
	r.rec.setHooks(interceptors{escrow: func(n acceptor.Note) {
		if n.ValueMinor == v[2] && !down {
			down = true
			for range 12 {
				if err := r.u.Fault("no_reply", 0); err != nil {
					r.t.Error(err)
				}
			}
		}
	}})
	r.insert(v[2])
	r.eventually("the link loss report", func() bool { return r.rec.count(isEvent(acceptor.CommLost)) > 0 })
	r.eventually("the link back", func() bool { return r.rec.count(isEvent(acceptor.CommRestored)) > 0 })
	r.rec.setHooks(interceptors{})
	r.eventually("the interrupted session's receipt", func() bool { return r.prn.count() == 1 })
	r.waitState(session.Idle)
	r.open(1_000_000)
	r.feed(v[0])
	r.finish()
	r.expectTrace(0, creditOf(v[1]), escrowOf(v[2], acceptor.Stack), eventOf(acceptor.CommLost), eventOf(acceptor.CommRestored), creditOf(v[0]))
	if n := r.rec.count(func(e entry) bool { return isCredit(e) && e.note.ValueMinor == v[2] }); n != 1 {
		r.t.Errorf("the note in escrow during the link loss was reported credited %d times", n)
	}
	r.check(outcome{credited: []int64{v[1], v[2], v[0]},
		topups: []topup{tp(wire.OutcomeInterrupted, 0, v[1], v[2]), tp(wire.OutcomeComplete, 0, v[0])}})
}

// 12: the unit loses power while the host runs. With a note past the point of no return
// the unit's power-up report settles the open stack intent (credited once, even with CCNET's
// credit recovery); with nothing in the path it is only a restart. Either way the engine
// brings the unit back to what the session wants and the session goes on.
func unitPowerCut(r *rig, withNote bool) {
	v := r.values()
	r.open(1_000_000)
	r.feed(v[1])
	want := outcome{credited: []int64{v[1], v[0]}, topups: []topup{tp(wire.OutcomeComplete, 0, v[1], v[0])}}
	if withNote {
		cut := false
		r.rec.setHooks(interceptors{event: func(e acceptor.Event) {
			if e.Kind == acceptor.Stacking && !cut {
				cut = true
				if err := r.u.PowerCycle("auto"); err != nil {
					r.t.Error(err)
				}
			}
		}})
		r.insert(v[2])
		r.eventually("the power-up report", func() bool { return r.rec.count(isEvent(acceptor.PowerUpNoteInStacker)) > 0 })
		r.rec.setHooks(interceptors{})
		want = outcome{credited: []int64{v[1], v[2], v[0]}, topups: []topup{tp(wire.OutcomeComplete, 0, v[1], v[2], v[0])},
			reReported: r.recovered()}
	} else {
		if err := r.u.PowerCycle("none"); err != nil {
			r.t.Fatal(err)
		}
		r.eventually("the power-up report", func() bool { return r.rec.count(isEvent(acceptor.PowerUp)) > 1 })
	}
	if s := r.state(); s != session.Accepting.String() {
		r.t.Errorf("engine %s after the unit's power cut, want the session still accepting", s)
	}
	r.feed(v[0])
	r.finish()
	r.check(want)
}

// 12: the unit loses power while it stacks a note, and the journal's storage fails at that
// moment, so the host cannot record the unit's power-up report of the note. The unit must
// not be told to forget the note (RESET) before its report is journaled: the report is
// refused and kept (a unit that repeats it stays in its power-up state; one that reports it
// once has it held by the driver), and the next host, on working storage, settles the
// note's stack intent from that report (or from the unit's stacked counter): the note is
// credited, not made uncertain or lost.
func unitPowerCutStorageFailing(r *rig) {
	v := r.values()
	r.open(1_000_000)
	r.feed(v[1])
	var cut atomic.Bool
	h := r.cur()
	r.rec.setHooks(interceptors{event: func(e acceptor.Event) {
		if e.Kind == acceptor.Stacking && cut.CompareAndSwap(false, true) {
			h.breakStorage()
			if err := r.u.PowerCycle("auto"); err != nil {
				r.t.Error(err)
			}
		}
	}})
	r.insert(v[2])
	refused := func(e entry) bool { return e.call == "power_up_refused" && e.kind == acceptor.PowerUpNoteInStacker }
	r.eventually("the power-up report refused", func() bool { return r.rec.count(refused) > 0 })
	r.rec.setHooks(interceptors{})
	// The supervisor restarts the daemon whose storage failed.
	h.abort()
	r.start()
	r.ready()
	// After the first refusal the first host neither got the report recorded nor saw the
	// unit initialise (a RESET).
	after := false
	for _, e := range r.rec.snapshot() {
		if e.gen != 1 {
			continue
		}
		if after && e.call == "event" && (e.kind == acceptor.Initializing || e.kind == acceptor.PowerUpNoteInStacker) {
			r.t.Errorf("%s: %v after the power-up report was refused: the unit was reset; trace:\n%s", r.p.name, e, r.traceText())
		}
		after = after || refused(e)
	}
	r.check(outcome{credited: []int64{v[1], v[2]}, topups: []topup{tp(wire.OutcomeInterrupted, 0, v[1], v[2])},
		reReported: r.recovered()})
}

// 09 (service): a unit that latches its cheat report (ID-003 CHEATED, CCNET CHEATED until
// RESET) takes no note; the model counts Fraud among the faults that stop cash acceptance
// until they clear (acceptor.Kind.Fault), so the kiosk must be out of service, not inviting
// customers to a session the unit cannot serve, until the unit is back at rest.
func fraudLatched(r *rig) {
	v := r.values()
	r.u.Cheat()
	r.eventually("the fraud report", func() bool { return r.rec.count(isEvent(acceptor.Fraud)) > 0 })
	if r.atRestSince(isEvent(acceptor.Fraud)) {
		r.t.Fatalf("%s: the unit did not latch its cheat report", r.p.name)
	}
	r.waitState(session.OutOfService)
	ctx := context.Background()
	if err := r.cur().l.drv.Reset(ctx); err != nil {
		r.t.Fatal(err)
	}
	r.signOffFraud(ctx)
	r.waitState(session.Idle)
	r.open(1_000_000)
	r.feed(v[1])
	r.finish()
	r.check(outcome{credited: []int64{v[1]}, topups: []topup{tp(wire.OutcomeComplete, 0, v[1])}})
}

// signOffFraud is the technician's sign-off of the latched cheat attempt, once the unit's
// own report of it has ended (a report still coming latches it again).
func (r *rig) signOffFraud(ctx context.Context) {
	r.t.Helper()
	r.eventually("the unit at rest after its reset", func() bool { return r.atRestSince(isEvent(acceptor.Fraud)) })
	if err := r.cur().e.SignOff(ctx, session.CondAcceptorFraud, "conformance technician", "unit reset, note path checked"); err != nil {
		r.t.Fatal(err)
	}
}

// 13: the unit reports a hardware failure: the kiosk goes out of service, and a
// technician's reset, which clears it, brings the kiosk back.
func unitFailure(r *rig) {
	v := r.values()
	r.u.Fail(0) // the emulator's default failure code
	r.eventually("the failure report", func() bool { return r.rec.count(isEvent(acceptor.Failure)) > 0 })
	r.waitState(session.OutOfService)
	ctx := context.Background()
	r.eventually("a technician reset", func() bool { return r.cur().l.drv.Reset(ctx) == nil })
	r.waitState(session.Idle)
	r.open(1_000_000)
	r.feed(v[1])
	r.finish()
	r.check(outcome{credited: []int64{v[1]}, topups: []topup{tp(wire.OutcomeComplete, 0, v[1])}})
}

// 06 (no power cut): the host dies right after journaling the stack intent while the unit,
// still powered, holds the note in escrow; the new host finds the note there, stacks it for
// the open intent (SSP: the unit cannot say which note it holds; the intent's note it is)
// and credits it exactly once.
func restartNoteInEscrow(r *rig) {
	v := r.values()
	first, second := v[2], v[3]
	r.open(1_000_000)
	r.feed(first)
	r.crashDuring(atStackIntent, second)
	r.start()
	r.ready()
	r.expectTrace(2, creditOf(0))
	r.check(outcome{credited: []int64{first, second}, topups: []topup{tp(wire.OutcomeInterrupted, 0, first, second)}})
}

// 14: the customer presses Finish while a note is on its way to the cassette: the session
// waits for it, and the top-up includes it.
func finishInTransit(r *rig) {
	v := r.values()
	r.open(1_000_000)
	r.feed(v[1])
	pressed := false
	at := acceptor.Stacking
	if r.p.escrowless {
		at = acceptor.Accepting // the first pulse: the note is already in the cassette
	}
	r.rec.setHooks(interceptors{event: func(e acceptor.Event) {
		if e.Kind == at && !pressed {
			pressed = true
			if err := r.cur().e.Finish(); err != nil {
				r.t.Errorf("finish: %v", err)
			}
		}
	}})
	r.insert(v[2])
	r.eventually("the session to close", func() bool { return r.prn.count() == 1 })
	r.rec.setHooks(interceptors{})
	r.waitState(session.Idle)
	if !pressed {
		r.t.Fatalf("Finish was never pressed")
	}
	r.check(outcome{credited: []int64{v[1], v[2]}, topups: []topup{tp(wire.OutcomeComplete, 0, v[1], v[2])}})
}

// 07 (power cut): the host dies at the credit point before the commit and the unit loses
// power too (one power cut for the whole kiosk). The note is in the cassette; the new host
// credits it once from the unit's power-up report, or, where the unit says nothing about a
// note whose credit it had already reported, records it as an uncertain item. Never lost,
// never twice.
func restartBeforeCommitPowerCut(r *rig) {
	v := r.values()
	first, second := v[2], v[3]
	r.open(1_000_000)
	r.feed(first)
	r.crashDuring(atBeforeCommit, second)
	if err := r.u.PowerCycle("auto"); err != nil {
		r.t.Fatal(err)
	}
	r.start()
	r.ready()
	if r.p.powerCutForgetsCredit == "" {
		r.check(outcome{credited: []int64{first, second}, topups: []topup{tp(wire.OutcomeInterrupted, 0, first, second)},
			reReported: r.recovered()})
		return
	}
	r.t.Logf("%s: %s", r.p.name, r.p.powerCutForgetsCredit)
	r.expectNone("a report of the note after the power cut", func(e entry) bool {
		return e.gen == 2 && (isCredit(e) || (e.call == "event" && e.kind == acceptor.PowerUpNoteInStacker))
	})
	if r.p.stackCounter {
		// Its stacked counter still counts the note: recovery credits it from that witness.
		r.check(outcome{credited: []int64{first, second}, topups: []topup{tp(wire.OutcomeInterrupted, 0, first, second)}})
		return
	}
	want := outcome{credited: []int64{first}, uncertain: []int64{second}, resolved: []string{"uncertain"},
		topups: []topup{tp(wire.OutcomeInterrupted, 1, first)}}
	r.check(want)
}

// 05: the cassette pulled while a note is being stacked. The note left inside the pulled
// cassette but the unit never reported its credit, so the host cannot know where it went:
// it is an uncertain item of its session (settled at cash collection), never a credit and
// never forgotten; the kiosk is out of service until a cassette is back.
func cassettePulledMidStack(r *rig) {
	v := r.values()
	r.open(1_000_000)
	r.feed(v[1])
	var pulled atomic.Bool
	r.rec.setHooks(interceptors{event: func(e acceptor.Event) {
		if e.Kind == acceptor.Stacking && pulled.CompareAndSwap(false, true) {
			if err := r.u.PullCassette(); err != nil {
				r.t.Errorf("pull the cassette mid-stack: %v", err)
			}
		}
	}})
	r.insert(v[2])
	r.eventually("the cassette removed report", func() bool { return r.rec.count(isEvent(acceptor.CassetteRemoved)) > 0 })
	r.eventually("the session to stop", func() bool { return r.state() != session.Accepting.String() })
	r.rec.setHooks(interceptors{})
	r.eventually("the session to close", func() bool { return r.prn.count() == 1 })
	r.waitState(session.OutOfService)
	if err := r.u.ReplaceCassette(); err != nil {
		r.t.Fatal(err)
	}
	// A cassette pulled while a note was on its way into it latches until a technician signs
	// it off: the cassette back in does not put the kiosk back in service.
	r.eventually("the cassette replaced report", func() bool { return r.rec.count(isEvent(acceptor.CassetteReplaced)) > 0 })
	if st := r.state(); st != session.OutOfService.String() {
		r.t.Fatalf("state %s after the cassette went back, want out_of_service until the sign-off", st)
	}
	if err := r.cur().e.SignOff(context.Background(), session.SignoffMidStack, "conformance technician", "cassette checked, pulled note counted"); err != nil {
		r.t.Fatal(err)
	}
	r.waitState(session.Idle)
	r.open(1_000_000)
	r.feed(v[0])
	r.finish()
	r.expectTrace(0, creditOf(v[1]), escrowOf(v[2], acceptor.Stack), eventOf(acceptor.CassetteRemoved),
		eventOf(acceptor.CassetteReplaced), creditOf(v[0]))
	st := r.u.Stacked()
	if len(st) != 3 || st[1].ValueMinor != v[2] || st[1].Via != "cassette_pulled" || st[1].Cassette != 1 || st[2].Cassette != 2 {
		r.t.Errorf("emulator cassettes %+v, want the pulled note in the first cassette and the last note in the second", st)
	}
	r.check(outcome{credited: []int64{v[1], v[0]}, uncertain: []int64{v[2]}, resolved: []string{"uncertain"},
		topups: []topup{tp(wire.OutcomeInterrupted, 1, v[1]), tp(wire.OutcomeComplete, 0, v[0])}})
}
