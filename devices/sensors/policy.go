package sensors

// Condition is what an input's state means for the kiosk, as plain data: the caller maps it
// onto its health registry (kiosk/health), which this package does not import. Severity and
// Actor use that registry's words.
type Condition struct {
	// Kind names the condition: "cabinet_door_open", "vault_door_open", "tamper", or
	// "sensor_<name>_active" for an input Classify does not know.
	Kind string `json:"kind"`
	// Raise is true when the condition must be set (or updated), false when it may be cleared.
	Raise bool `json:"raise"`
	// Latched conditions are not cleared by the input going back: someone must clear them
	// by hand (a tamper alarm stays until an engineer has looked).
	Latched bool `json:"latched,omitempty"`
	// Severity is "info", "warning" or "critical".
	Severity string `json:"severity,omitempty"`
	// Actor is who must act: "none", "staff" or "engineer".
	Actor string `json:"actor,omitempty"`
	// StopsService is true when no cash may be taken while the condition is active.
	StopsService bool   `json:"stops_service,omitempty"`
	Detail       string `json:"detail,omitempty"`
}

// Classify says what an input's state means, given whether the kiosk is in maintenance (a
// technician or cash collector signed in on site):
//
//   - cabinet door open: outside maintenance a warning for staff; during maintenance
//     information only. The kiosk keeps serving (the cash path stays locked).
//   - vault door open: no cash is taken while it is open. Outside maintenance it is a
//     critical alarm for staff; during maintenance (cash collection) information only.
//   - tamper: a critical alarm for an engineer that stops service, in maintenance too, and
//     latched: the switch going back does not clear it.
//   - any other input: a warning for an engineer while active.
//
// When maintenance starts or ends, classify the current State again: the same Kind comes
// back with the new severity.
func Classify(name string, active, maintenance bool) Condition {
	switch name {
	case CabinetDoor:
		c := Condition{Kind: "cabinet_door_open", Raise: active}
		switch {
		case !active:
			c.Detail = "cabinet door closed"
		case maintenance:
			c.Severity, c.Actor, c.Detail = "info", "none", "cabinet door open during maintenance"
		default:
			c.Severity, c.Actor, c.Detail = "warning", "staff", "cabinet door opened outside maintenance"
		}
		return c
	case VaultDoor:
		c := Condition{Kind: "vault_door_open", Raise: active}
		switch {
		case !active:
			c.Detail = "vault door closed"
		case maintenance:
			c.Severity, c.Actor, c.StopsService, c.Detail = "info", "staff", true, "vault door open during maintenance; cash acceptance stopped"
		default:
			c.Severity, c.Actor, c.StopsService, c.Detail = "critical", "staff", true, "vault door opened outside maintenance; cash acceptance stopped"
		}
		return c
	case Tamper:
		if !active {
			return Condition{Kind: "tamper", Latched: true, Detail: "tamper switch back to normal; the alarm stays until an engineer clears it"}
		}
		return Condition{Kind: "tamper", Raise: true, Latched: true, Severity: "critical", Actor: "engineer",
			StopsService: true, Detail: "tamper switch triggered"}
	}
	c := Condition{Kind: "sensor_" + name + "_active", Raise: active, Detail: "input " + name + " inactive"}
	if active {
		c.Severity, c.Actor, c.Detail = "warning", "engineer", "input "+name+" active"
	}
	return c
}
