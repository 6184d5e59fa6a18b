package mqtt

import "strings"

// Topics names the MQTT topics of one site: the root is latch/v2/<site>/.
type Topics struct {
	Root string // "latch/v2/<site>/"
}

// TopicsFor returns the topics of site (a valid id, see CheckID).
func TopicsFor(site string) Topics { return Topics{Root: "latch/v2/" + site + "/"} }

// Keys is the site's retained list of key rotations.
func (t Topics) Keys() string { return t.Root + "keys" }

// DoorACL is where the site sends one door its view: sealed deltas and
// snapshot chunks.
func (t Topics) DoorACL(door string) string { return t.Root + "door/" + door + "/acl" }

// Heartbeat is the site's retained signed heartbeat to one door.
func (t Topics) Heartbeat(door string) string { return t.Root + "door/" + door + "/heartbeat" }

// Cmd is where the site sends commands to a door.
func (t Topics) Cmd(door string) string { return t.Root + "door/" + door + "/cmd" }

// Events is where a door publishes its audit events.
func (t Topics) Events(door string) string { return t.Root + "door/" + door + "/events" }

// EventsAck is where the site acknowledges a door's events.
func (t Topics) EventsAck(door string) string { return t.Root + "door/" + door + "/events/ack" }

// Status is a door's retained status.
func (t Topics) Status(door string) string { return t.Root + "door/" + door + "/status" }

// Sync is where a door asks for its view.
func (t Topics) Sync(door string) string { return t.Root + "door/" + door + "/sync" }

// AllDoors returns the filter matching a per-door topic of every door,
// suffix being "events", "sync", "status" and so on.
func (t Topics) AllDoors(suffix string) string { return t.Root + "door/+/" + suffix }

// DoorOf returns the door id of a per-door topic with the given suffix, or
// "" when topic is not one.
func (t Topics) DoorOf(topic, suffix string) string {
	rest, ok := strings.CutPrefix(topic, t.Root+"door/")
	if !ok {
		return ""
	}
	door, ok := strings.CutSuffix(rest, "/"+suffix)
	if !ok || CheckID("door", door) != nil {
		return ""
	}
	return door
}
