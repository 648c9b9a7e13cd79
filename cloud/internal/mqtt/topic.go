package mqtt

import (
	"strings"

	"github.com/credloop/credloop/cloud/registry"
)

// Payload formats of the fleet-provisioning topics.
const (
	formatJSON = "json"
	formatCBOR = "cbor"
)

// op is an operation a PUBLISH asks of the cloud itself.
type op int

const (
	opNone          op = iota
	opCreate           // $aws/certificates/create/<fmt>
	opCreateFromCSR    // $aws/certificates/create-from-csr/<fmt>
	opProvision        // $aws/provisioning-templates/<name>/provision/<fmt>
	opRotationCSR      // devices/<id>/certs/csr
)

// request is a PUBLISH topic the cloud answers.
type request struct {
	op       op
	format   string // fleet operations: "json" or "cbor"
	template string // opProvision
	device   string // opRotationCSR
}

// parseRequest says which operation, if any, a PUBLISH topic asks of the
// cloud. Names in topics (template, device) must be valid registry ids.
func parseRequest(topic string) (request, bool) {
	lv := strings.Split(topic, "/")
	switch {
	case len(lv) == 4 && lv[0] == "$aws" && lv[1] == "certificates" && validFormat(lv[3]):
		switch lv[2] {
		case "create":
			return request{op: opCreate, format: lv[3]}, true
		case "create-from-csr":
			return request{op: opCreateFromCSR, format: lv[3]}, true
		}
	case len(lv) == 5 && lv[0] == "$aws" && lv[1] == "provisioning-templates" && lv[3] == "provision" && validFormat(lv[4]):
		if registry.ValidTemplateName(lv[2]) == nil {
			return request{op: opProvision, format: lv[4], template: lv[2]}, true
		}
	case len(lv) == 4 && lv[0] == "devices" && lv[2] == "certs" && lv[3] == "csr":
		if registry.ValidID(lv[1]) == nil {
			return request{op: opRotationCSR, device: lv[1]}, true
		}
	}
	return request{}, false
}

func validFormat(f string) bool { return f == formatJSON || f == formatCBOR }

// topic is the request's own topic: parseRequest(r.topic()) == r.
func (r request) topic() string {
	switch r.op {
	case opCreate:
		return "$aws/certificates/create/" + r.format
	case opCreateFromCSR:
		return "$aws/certificates/create-from-csr/" + r.format
	case opProvision:
		return "$aws/provisioning-templates/" + r.template + "/provision/" + r.format
	case opRotationCSR:
		return rotationTopic(r.device, "csr")
	}
	return ""
}

// accepted and rejected are the response topics of a request.
func (r request) accepted() string { return r.topic() + "/accepted" }
func (r request) rejected() string { return r.topic() + "/rejected" }

// rotationTopic is devices/<device>/certs/<leaf>.
func rotationTopic(device, leaf string) string { return "devices/" + device + "/certs/" + leaf }

// registeredTopic is where certificate registrations are announced.
func registeredTopic(caID string) string { return "$aws/events/certificates/registered/" + caID }

// scope is what a peer may use: the topic prefixes it may subscribe to
// and receive from, and the requests it may publish. A prefix P allows
// P itself and everything below it (P/#).
type scope struct {
	prefixes [][]string
	// publishAnywhere allows publishing to any topic under prefixes (a
	// device on its own topics); otherwise only the requests in ops.
	publishAnywhere bool
	ops             []op
	template        string // opProvision: the only template allowed
}

// deviceScope is a thing's: devices/T/# and $aws/things/T/#.
func deviceScope(device string) scope {
	return scope{
		prefixes:        [][]string{{"devices", device}, {"$aws", "things", device}},
		publishAnywhere: true,
	}
}

// claimScope is a claim certificate's: the fleet-provisioning topics of
// its CA registration's template.
func claimScope(template string) scope {
	sc := scope{
		prefixes: [][]string{{"$aws", "certificates", "create"}, {"$aws", "certificates", "create-from-csr"}},
		ops:      []op{opCreate, opCreateFromCSR},
	}
	if template != "" {
		sc.prefixes = append(sc.prefixes, []string{"$aws", "provisioning-templates", template, "provision"})
		sc.ops = append(sc.ops, opProvision)
		sc.template = template
	}
	return sc
}

// canRead reports whether a SUBSCRIBE filter (or the topic of a message to
// deliver) stays inside the scope: every topic it can match does.
func (sc scope) canRead(filter string) bool {
	return covered(filter, sc.prefixes)
}

// canPublish reports whether a PUBLISH to topic is allowed.
func (sc scope) canPublish(topic string) bool {
	if strings.ContainsAny(topic, "+#") || topic == "" {
		return false
	}
	if sc.publishAnywhere {
		return covered(topic, sc.prefixes)
	}
	r, ok := parseRequest(topic)
	if !ok {
		return false
	}
	for _, o := range sc.ops {
		if o == r.op && (o != opProvision || r.template == sc.template) {
			return true
		}
	}
	return false
}

// covered reports whether every topic the filter matches lies under one
// of the prefixes: the filter's first levels equal a prefix literally
// (no wildcard among them).
func covered(filter string, prefixes [][]string) bool {
	if filter == "" {
		return false
	}
	lv := strings.Split(filter, "/")
	for _, p := range prefixes {
		if len(lv) < len(p) {
			continue
		}
		ok := true
		for i, s := range p {
			if lv[i] != s {
				ok = false
				break
			}
		}
		if ok {
			return true
		}
	}
	return false
}

// match reports whether a topic filter matches a topic name (MQTT 3.1.1
// section 4.7): "+" matches one level, a final "#" the rest (including
// the parent level), and wildcards at the first level do not match
// topics starting with "$".
func match(filter, topic string) bool {
	if filter == "" || topic == "" {
		return false
	}
	fl := strings.Split(filter, "/")
	tl := strings.Split(topic, "/")
	if strings.HasPrefix(topic, "$") && (fl[0] == "+" || fl[0] == "#") {
		return false
	}
	for i, f := range fl {
		switch {
		case f == "#":
			return i == len(fl)-1
		case i >= len(tl):
			return false
		case f == "+":
		case f != tl[i]:
			return false
		}
	}
	return len(fl) == len(tl)
}
