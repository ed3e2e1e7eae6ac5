package main

// Hostile input against every route of the real router (the App that main
// builds, on 127.0.0.1:0): each bad request gets the status of the contract
// with a clear message, and nothing in the database changes. Names made to
// break pages or the event stream are stored verbatim and shown escaped.

import (
	"encoding/base64"
	"slices"
	"strconv"
	"strings"

	"github.com/labstack/echo/v4"
)

// hostileRequest is one bad request and the statuses it may get.
type hostileRequest struct {
	name   string
	method string
	target string // path and query, sent as written
	header map[string]string
	body   string
	// size, when set, sends a body of this many bytes instead of body.
	size int
	// chunked sends the body without a Content-Length.
	chunked bool
	want    []int
	// msg is a piece of the error message (case-insensitive).
	msg string
}

// manyIDs is "1,2,…,n".
func manyIDs(n int) string {
	ids := make([]string, n)
	for i := range ids {
		ids[i] = strconv.Itoa(i + 1)
	}
	return strings.Join(ids, ",")
}

// longText is n copies of r.
func longText(r string, n int) string { return strings.Repeat(r, n) }

// Bad values for a path parameter that is a whole-number id.
var hostileIDs = []string{
	"abc", "-1", "0", "1.5", "1e3", "0x10", "%20", "%00", "1%0d%0aSet-Cookie:%20x=1",
	"99999999999999999999999", "9223372036854775808", "9223372036854775807", "%D9%A3", // Arabic-Indic three
	"%E2%80%AE1", "%3Cscript%3E", "1;DROP%20TABLE%20pets", longText("9", 300),
}

// Bad values for other path parameters (queue names, actions).
var hostileWords = []string{"nope", "%00", "%E2%80%AE", "%3Cscript%3E", "..%2F..%2Fetc", longText("q", 300)}

// goneIsOK are routes that answer a well-formed id of no row with 200: an
// htmx fragment saying the row is gone (htmx swaps no 404).
var goneIsOK = []string{"GET /jobs/:id/panel"}

// crossSite are the ways a browser says a request comes from another site's
// page: the cross-origin protection refuses each with 403, before the
// route sees it.
var crossSite = []struct {
	name   string
	header map[string]string
}{
	{name: "cross-site browser request", header: map[string]string{"Sec-Fetch-Site": "cross-site"}},
	{name: "same-site but another origin", header: map[string]string{"Sec-Fetch-Site": "same-site"}},
	{name: "Origin of another site", header: map[string]string{"Origin": "https://evil.example"}},
}

// buttonCases are for a route that takes no input (a button): requests
// from other sites' pages, which must change nothing.
func buttonCases(method, target string) []hostileRequest {
	var out []hostileRequest
	for _, c := range crossSite {
		out = append(out, hostileRequest{name: c.name, method: method, target: target, header: c.header,
			want: []int{403}, msg: "cross-site"})
	}
	return out
}

// routeCases are the cases written for each route ("METHOD path"), on top
// of the generic ones every route gets.
func routeCases() map[string][]hostileRequest {
	// paging are the limit and cursor cases of every keyset listing.
	paging := func(path string) []hostileRequest {
		return []hostileRequest{
			{name: "limit not a number", target: path + "?limit=abc", want: []int{400}, msg: "limit"},
			{name: "limit zero", target: path + "?limit=0", want: []int{422}, msg: "limit"},
			{name: "limit huge", target: path + "?limit=99999999999999999999999", want: []int{400}, msg: "limit"},
			{name: "cursor garbage", target: path + "?cursor=!!!%00", want: []int{400}, msg: "cursor"},
		}
	}
	list := func(path string) []hostileRequest {
		return append(paging(path), []hostileRequest{
			{name: "limit negative", target: path + "?limit=-5", want: []int{422}, msg: "limit"},
			{name: "limit too large", target: path + "?limit=1001", want: []int{422}, msg: "limit"},
			{name: "cursor without an id", target: path + "?cursor=" + base64.RawURLEncoding.EncodeToString([]byte("0:Ayala")), want: []int{400}, msg: "cursor"},
			{name: "cursor negative id", target: path + "?cursor=" + base64.RawURLEncoding.EncodeToString([]byte("-4:Ayala")), want: []int{400}, msg: "cursor"},
			{name: "cursor padded base64", target: path + "?cursor=" + base64.URLEncoding.EncodeToString([]byte("1:Ay")), want: []int{400}, msg: "cursor"},
			{name: "cursor standard base64", target: path + "?cursor=" + base64.StdEncoding.EncodeToString([]byte("1:A?>")), want: []int{400}, msg: "cursor"},
			{name: "cursor overflowing id", target: path + "?cursor=" + base64.RawURLEncoding.EncodeToString([]byte("99999999999999999999:A")), want: []int{400}, msg: "cursor"},
			{name: "q too long", target: path + "?q=" + longText("x", 101), want: []int{422}, msg: "100"},
			{name: "q long in runes", target: path + "?q=" + longText("%E2%98%83", 101), want: []int{422}, msg: "100"},
			{name: "q with control characters", target: path + "?q=%00%01%0d%0a%1b", want: []int{200}},
			{name: "q with an SQL fragment", target: path + "?q=%27%20OR%201%3D1%20--", want: []int{200}},
			{name: "q with LIKE wildcards", target: path + "?q=%25_%5C", want: []int{200}},
			{name: "q with invalid UTF-8", target: path + "?q=%FF%FE", want: []int{200, 400, 422}},
			{name: "unknown parameters", target: path + "?utm_source=x&%FF=%00&q[]=1&status[]=2", want: []int{200}},
			{name: "repeated parameters", target: path + "?limit=5&limit=abc", want: []int{200}},
		}...)
	}
	etList := func(path string) []hostileRequest {
		return append(list(path),
			hostileRequest{name: "unknown status", target: path + "?status=home", want: []int{422}, msg: "status"},
			hostileRequest{name: "status with markup", target: path + "?status=%3Cscript%3E", want: []int{422}, msg: "status"},
		)
	}
	petList := func(path string) []hostileRequest {
		return append(list(path),
			hostileRequest{name: "alive not a boolean", target: path + "?alive=maybe", want: []int{422}, msg: "alive"},
			hostileRequest{name: "alive as a number", target: path + "?alive=1", want: []int{422}, msg: "alive"},
		)
	}
	jsonType := map[string]string{"Content-Type": "application/json"}
	formType := map[string]string{"Content-Type": "application/x-www-form-urlencoded"}
	adoptJSON := []hostileRequest{
		{name: "form instead of JSON", header: formType, body: "name=Rex&species=cat", want: []int{415}, msg: "application/json"},
		{name: "text instead of JSON", header: map[string]string{"Content-Type": "text/plain"}, body: `{"name":"Rex","species":"cat"}`, want: []int{415}, msg: "application/json"},
		{name: "no content type", body: `{"name":"Rex","species":"cat"}`, want: []int{415}, msg: "application/json"},
		{name: "multipart", header: map[string]string{"Content-Type": "multipart/form-data; boundary=x"}, body: "--x--", want: []int{415}},
		{name: "json lookalike type", header: map[string]string{"Content-Type": "application/jsonx"}, body: `{}`, want: []int{415}},
		{name: "malformed content type", header: map[string]string{"Content-Type": "application/json; ;;=="}, body: `{}`, want: []int{415, 400}},
		{name: "empty body", header: jsonType, want: []int{400}, msg: "empty"},
		{name: "truncated", header: jsonType, body: `{"name":"Rex"`, want: []int{400}, msg: "malformed"},
		{name: "not an object", header: jsonType, body: `["Rex","cat"]`, want: []int{400}, msg: "malformed"},
		{name: "wrong type", header: jsonType, body: `{"name":7,"species":"cat"}`, want: []int{400}, msg: "malformed"},
		{name: "unknown field", header: jsonType, body: `{"name":"Rex","species":"cat","keeper_id":"x"}`, want: []int{400}, msg: "unknown field"},
		{name: "two values", header: jsonType, body: `{"name":"Rex","species":"cat"} {"name":"Rex","species":"cat"}`, want: []int{400}},
		{name: "trailing garbage", header: jsonType, body: `{"name":"Rex","species":"cat"}garbage`, want: []int{400}},
		{name: "deep nesting", header: jsonType, body: `{"name":` + longText("[", 100000) + longText("]", 100000) + `}`, want: []int{400}},
		{name: "null", header: jsonType, body: `null`, want: []int{422}, msg: "name"},
		{name: "empty object", header: jsonType, body: `{}`, want: []int{422}, msg: "name"},
		{name: "name too long", header: jsonType, body: `{"name":"` + longText("a", 101) + `","species":"cat"}`, want: []int{422}, msg: "100"},
		{name: "name too long in runes", header: jsonType, body: `{"name":"` + longText("☃", 101) + `","species":"cat"}`, want: []int{422}, msg: "100"},
		{name: "name too short", header: jsonType, body: `{"name":"ab","species":"cat"}`, want: []int{422}, msg: "name"},
		{name: "name of spaces", header: jsonType, body: `{"name":"      ","species":"cat"}`, want: []int{422}, msg: "name"},
		{name: "name with a line break", header: jsonType, body: `{"name":"Rex\r\nevent: resync","species":"cat"}`, want: []int{422}, msg: "control"},
		{name: "name with NUL", header: jsonType, body: `{"name":"Rex\u0000Rex","species":"cat"}`, want: []int{422}, msg: "control"},
		{name: "name invalid UTF-8", header: jsonType, body: "{\"name\":\"\xff\",\"species\":\"cat\"}", want: []int{400, 422}},
		{name: "unknown species", header: jsonType, body: `{"name":"Rex","species":"dragon"}`, want: []int{422}, msg: "species"},
		{name: "species with markup", header: jsonType, body: `{"name":"Rex","species":"<script>"}`, want: []int{422}, msg: "species"},
		{name: "oversized chunked", header: jsonType, size: MaxTestBody, chunked: true, want: []int{413, 400}},
	}
	adoptForm := []hostileRequest{
		{name: "name too long", header: formType, body: "species=cat&name=" + longText("a", 101), want: []int{422}, msg: "100"},
		{name: "name too short", header: formType, body: "species=cat&name=ab", want: []int{422}},
		{name: "name with a line break", header: formType, body: "species=cat&name=Rex%0d%0aevent:%20x", want: []int{422}, msg: "control"},
		{name: "name invalid UTF-8", header: formType, body: "species=cat&name=%FF%FE%FD", want: []int{422}, msg: "UTF-8"},
		{name: "no fields", header: formType, body: "", want: []int{422}},
		{name: "malformed encoding", header: formType, body: "name=%zz&species=cat", want: []int{400, 422}},
		{name: "unknown species", header: formType, body: "name=Rex&species=dragon", want: []int{422}, msg: "species"},
		{name: "JSON to the form", header: jsonType, body: `{"name":"Rex","species":"cat"}`, want: []int{400, 415, 422}},
		{name: "bogus multipart", header: map[string]string{"Content-Type": "multipart/form-data; boundary=zz"}, body: "--zz\r\nContent-Disposition: form-data; name=\"name\"\r\n\r\nRex", want: []int{400, 422}},
		{name: "oversized chunked", header: formType, size: MaxTestBody, chunked: true, want: []int{413, 400, 422}},
	}
	stream := []hostileRequest{
		{name: "no stream", target: "/events", want: []int{400}, msg: "stream"},
		{name: "empty stream", target: "/events?stream=", want: []int{400}, msg: "stream"},
		{name: "unknown stream", target: "/events?stream=nope", want: []int{404}, msg: "unknown stream"},
		{name: "stream with a line break", target: "/events?stream=pets%0d%0aevent:%20x", want: []int{404}},
		{name: "stream with NUL", target: "/events?stream=pets%00", want: []int{404}},
		{name: "pet stream not a number", target: "/events?stream=pet-abc", want: []int{404}},
		{name: "pet stream zero", target: "/events?stream=pet-0", want: []int{404}},
		{name: "pet stream negative", target: "/events?stream=pet--1", want: []int{404}},
		{name: "pet stream unknown", target: "/events?stream=pet-999999", want: []int{404}},
		{name: "pet stream overflow", target: "/events?stream=pet-99999999999999999999", want: []int{404}},
		{name: "pet stream unicode digits", target: "/events?stream=pet-%D9%A3", want: []int{404}},
		{name: "long stream name", target: "/events?stream=" + longText("s", 10000), want: []int{404}},
		{name: "last_event_id not a number", target: "/events?stream=extraterrestrials&last_event_id=abc", want: []int{400}, msg: "last_event_id"},
		{name: "last_event_id negative", target: "/events?stream=extraterrestrials&last_event_id=-1", want: []int{400}, msg: "last_event_id"},
		{name: "last_event_id overflow", target: "/events?stream=extraterrestrials&last_event_id=99999999999999999999", want: []int{400}},
		{name: "Last-Event-ID not a number", target: "/events?stream=extraterrestrials", header: map[string]string{"Last-Event-ID": "1e5"}, want: []int{400}, msg: "Last-Event-ID"},
		{name: "Last-Event-ID with a sign", target: "/events?stream=extraterrestrials", header: map[string]string{"Last-Event-ID": "+12"}, want: []int{200, 400}},
		{name: "Last-Event-ID hex", target: "/events?stream=extraterrestrials", header: map[string]string{"Last-Event-ID": "0x1F"}, want: []int{400}},
		{name: "ids not numbers", target: "/events?stream=extraterrestrials&ids=abc", want: []int{400}, msg: "ids"},
		{name: "ids zero", target: "/events?stream=extraterrestrials&ids=0", want: []int{400}, msg: "ids"},
		{name: "ids negative", target: "/events?stream=extraterrestrials&ids=-1", want: []int{400}, msg: "ids"},
		{name: "ids with a hole", target: "/events?stream=extraterrestrials&ids=1,,2", want: []int{400}, msg: "ids"},
		{name: "ids overflow", target: "/events?stream=extraterrestrials&ids=99999999999999999999", want: []int{400}, msg: "ids"},
		{name: "ids with a line break", target: "/events?stream=extraterrestrials&ids=1%0d%0a2", want: []int{400}},
		{name: "too many ids", target: "/events?stream=extraterrestrials&ids=" + manyIDs(1001), want: []int{422}, msg: "ids"},
		{name: "Last-Event-ID unicode", target: "/events?stream=extraterrestrials", header: map[string]string{"Last-Event-ID": "١٢"}, want: []int{400}},
	}
	static := []hostileRequest{
		{name: "parent folder", target: "/static/../main.go", want: []int{404, 400, 301}},
		{name: "escaped parent folder", target: "/static/%2e%2e/main.go", want: []int{404, 400}},
		{name: "escaped slash", target: "/static/..%2fmain.go", want: []int{404, 400}},
		{name: "the embed source", target: "/static/embed.go", want: []int{404}},
		{name: "folder listing", target: "/static/", want: []int{404}},
		{name: "vendor listing", target: "/static/vendor/", want: []int{404}},
		{name: "NUL", target: "/static/app.css%00.js", want: []int{404, 400}},
	}
	jobList := func(path string) []hostileRequest {
		return append(paging(path), []hostileRequest{
			{name: "unknown state", target: path + "?state=done", want: []int{422}, msg: "state"},
			{name: "state with markup", target: path + "?state=%3Cscript%3E", want: []int{422}, msg: "state"},
			{name: "queue too long", target: path + "?queue=" + longText("q", 101), want: []int{422}, msg: "100"},
			{name: "kind too long", target: path + "?kind=" + longText("k", 101), want: []int{422}, msg: "100"},
			{name: "queue with an SQL fragment", target: path + "?queue=%27%20OR%201%3D1--", want: []int{200}},
			{name: "kind with control characters", target: path + "?kind=%00%0d%0a", want: []int{200}},
			{name: "unknown parameters", target: path + "?utm=1&%FF=%00", want: []int{200}},
			{name: "search with an SQL fragment", target: path + "?q=%27%20OR%201%3D1%20--", want: []int{200}},
			{name: "search an args value with SQL", target: path + "?q=args.name:%22x%27)%3B%20DROP%20TABLE%20jobs%3B--%22", want: []int{200}},
			{name: "search with LIKE wildcards", target: path + "?q=%25_%5C", want: []int{200}},
			{name: "search with control characters", target: path + "?q=%00%01%1b", want: []int{200}},
			{name: "search with an unclosed quote", target: path + "?q=args.name:%22Korben", want: []int{400}, msg: "never closed"},
			{name: "search an unknown field", target: path + "?q=drop:table", want: []int{400}, msg: "unknown field"},
			{name: "search too long", target: path + "?q=" + longText("x", 501), want: []int{400}, msg: "500"},
			{name: "search with invalid UTF-8", target: path + "?q=%FF%FE", want: []int{400}, msg: "UTF-8"},
			{name: "search a deep args path", target: path + "?q=args.a.b.c.d.e.f.g.h.i:x", want: []int{400}, msg: "deeper"},
		}...)
	}
	bulkFilterJSON := withTarget("POST", "/api/jobs/bulk-filter", []hostileRequest{
		{name: "form instead of JSON", header: formType, body: "action=retry", want: []int{415}},
		{name: "malformed", header: jsonType, body: `{"action":`, want: []int{400}, msg: "malformed"},
		{name: "unknown field", header: jsonType, body: `{"action":"retry","ids":[1]}`, want: []int{400}},
		{name: "unknown action", header: jsonType, body: `{"action":"explode","dry_run":true}`, want: []int{422}, msg: "action"},
		{name: "unknown state", header: jsonType, body: `{"action":"retry","state":"done","dry_run":true}`, want: []int{422}, msg: "state"},
		{name: "bad query", header: jsonType, body: `{"action":"retry","q":"tag:\"x","dry_run":true}`, want: []int{400}, msg: "never closed"},
		{name: "query with SQL", header: jsonType, body: `{"action":"delete","q":"args.n:\"1' OR '1'='1\"","dry_run":true}`, want: []int{200}},
		{name: "queue too long", header: jsonType, body: `{"action":"retry","queue":"` + longText("q", 101) + `","dry_run":true}`, want: []int{422}, msg: "100"},
		{name: "dry run", header: jsonType, body: `{"action":"cancel","state":"discarded","dry_run":true}`, want: []int{200}},
	})
	bulkFilterForm := withTarget("POST", "/jobs/bulk-filter", []hostileRequest{
		{name: "unknown action", header: formType, body: "action=explode", want: []int{422}, msg: "action"},
		{name: "unknown state", header: formType, body: "action=retry&state=done", want: []int{422}},
		{name: "bad query", header: formType, body: "action=retry&q=%22x", want: []int{400}},
		{name: "back to elsewhere", header: formType, body: "action=explode&back=https://evil.example/", want: []int{422}},
		{name: "a confirmation", header: formType, body: "action=retry&state=cancelled&queue=nope", want: []int{200}},
	})
	bulkJSON := withTarget("POST", "/api/jobs/bulk", []hostileRequest{
		{name: "form instead of JSON", header: formType, body: "action=cancel&id=1", want: []int{415}},
		{name: "malformed", header: jsonType, body: `{"action":`, want: []int{400}, msg: "malformed"},
		{name: "ids not numbers", header: jsonType, body: `{"action":"cancel","ids":["1"]}`, want: []int{400}},
		{name: "unknown field", header: jsonType, body: `{"action":"cancel","ids":[1],"force":true}`, want: []int{400}},
		{name: "unknown action", header: jsonType, body: `{"action":"explode","ids":[1]}`, want: []int{422}, msg: "action"},
		{name: "no ids", header: jsonType, body: `{"action":"cancel","ids":[]}`, want: []int{422}},
		{name: "negative id", header: jsonType, body: `{"action":"cancel","ids":[-1]}`, want: []int{422}},
		{name: "id overflow", header: jsonType, body: `{"action":"cancel","ids":[99999999999999999999]}`, want: []int{400}},
		{name: "too many ids", header: jsonType, body: `{"action":"delete","ids":[` + manyIDs(1001) + `]}`, want: []int{422}},
		{name: "unknown jobs", header: jsonType, body: `{"action":"delete","ids":[999999,999998]}`, want: []int{200}},
	})
	bulkForm := withTarget("POST", "/jobs/bulk", []hostileRequest{
		{name: "unknown action", header: formType, body: "action=explode&id=1", want: []int{422}, msg: "action"},
		{name: "no ids", header: formType, body: "action=cancel", want: []int{422}},
		{name: "id not a number", header: formType, body: "action=cancel&id=abc", want: []int{400}},
		{name: "malformed form", header: formType, body: "action=cancel&id=%zz", want: []int{400, 422}},
		{name: "back to elsewhere", header: formType, body: "action=explode&id=1&back=https://evil.example/", want: []int{422}},
	})
	return map[string][]hostileRequest{
		"GET /jobs":           jobList("/jobs"),
		"GET /jobs/live":      jobList("/jobs/live"),
		"GET /api/jobs":       jobList("/api/jobs"),
		"GET /jobs/:id":       {{name: "unknown job", target: "/jobs/999999", want: []int{404}}},
		"GET /api/jobs/:id":   {{name: "unknown job", target: "/api/jobs/999999", want: []int{404}}},
		"GET /jobs/:id/panel": {{name: "unknown job: the panel says it is gone", target: "/jobs/999999/panel", want: []int{200, 404}}},
		"POST /jobs/:id/:action": {
			{name: "unknown job", target: "/jobs/999999/cancel", want: []int{404}},
			{name: "unknown action", target: "/jobs/1/explode", want: []int{404}, msg: "action"},
		},
		"POST /api/jobs/:id/cancel":  {{name: "unknown job", target: "/api/jobs/999999/cancel", want: []int{404}}},
		"POST /api/jobs/:id/retry":   {{name: "unknown job", target: "/api/jobs/999999/retry", want: []int{404}}},
		"DELETE /api/jobs/:id":       {{name: "unknown job", target: "/api/jobs/999999", want: []int{404}}},
		"POST /api/jobs/bulk":        bulkJSON,
		"POST /jobs/bulk":            bulkForm,
		"POST /api/jobs/bulk-filter": bulkFilterJSON,
		"POST /jobs/bulk-filter":     bulkFilterForm,
		"GET /api/jobs/bulk-filter/:id": {
			{name: "unknown action", target: "/api/jobs/bulk-filter/999999", want: []int{404}},
			{name: "not a number", target: "/api/jobs/bulk-filter/%3Cx%3E", want: []int{404}},
		},
		"GET /jobs/charts": {
			{name: "minutes not a number", target: "/jobs/charts?minutes=abc", want: []int{400}, msg: "minutes"},
			{name: "minutes too many", target: "/jobs/charts?minutes=31", want: []int{400}, msg: "minutes"},
			{name: "unknown parameters", target: "/jobs/charts?x=%00&%FF=1", want: []int{200}},
		},
		"GET /jobs/charts/live": {
			{name: "minutes zero", target: "/jobs/charts/live?minutes=0", want: []int{400}, msg: "minutes"},
			{name: "unknown parameters", target: "/jobs/charts/live?x=%00&%FF=1", want: []int{200}},
		},
		"GET /api/jobs/timings": {
			{name: "minutes negative", target: "/api/jobs/timings?minutes=-1", want: []int{400}, msg: "minutes"},
			{name: "minutes huge", target: "/api/jobs/timings?minutes=99999999999999999999", want: []int{400}, msg: "minutes"},
			{name: "unknown parameters", target: "/api/jobs/timings?x=%00&%FF=1", want: []int{200}},
		},
		"GET /api/queues": {{name: "unknown parameters", target: "/api/queues?x=%00", want: []int{200}}},
		"POST /api/queues/:name/:action": {
			{name: "unknown queue", target: "/api/queues/nope/pause", want: []int{404}, msg: "nope"},
			{name: "unknown action", target: "/api/queues/phone_calls/explode", want: []int{404}},
			{name: "scale with a form", target: "/api/queues/phone_calls/scale", header: formType, body: "limit=5", want: []int{415}},
			{name: "scale without a limit", target: "/api/queues/phone_calls/scale", header: jsonType, body: `{}`, want: []int{422}, msg: "limit"},
			{name: "scale to zero", target: "/api/queues/phone_calls/scale", header: jsonType, body: `{"limit":0}`, want: []int{422}, msg: "limit"},
			{name: "scale to a string", target: "/api/queues/phone_calls/scale", header: jsonType, body: `{"limit":"9"}`, want: []int{400}},
			{name: "scale to 1e99", target: "/api/queues/phone_calls/scale", header: jsonType, body: `{"limit":1e99}`, want: []int{400}},
			{name: "scale malformed", target: "/api/queues/phone_calls/scale", header: jsonType, body: `{"limit":`, want: []int{400}},
		},
		"POST /jobs/queues/:name/:action": {
			{name: "unknown queue", target: "/jobs/queues/nope/pause", want: []int{404}},
			{name: "unknown action", target: "/jobs/queues/phone_calls/explode", want: []int{404}},
			{name: "scale to text", target: "/jobs/queues/phone_calls/scale", header: formType, body: "limit=abc", want: []int{400}},
			{name: "scale to zero", target: "/jobs/queues/phone_calls/scale", header: formType, body: "limit=0", want: []int{422}},
			{name: "scale huge", target: "/jobs/queues/phone_calls/scale", header: formType, body: "limit=99999999999999999999", want: []int{400, 422}},
		},
		"GET /jobs/cron":       {{name: "unknown parameters", target: "/jobs/cron?x=%00&%FF=1", want: []int{200}}},
		"GET /jobs/cron/table": {{name: "unknown parameters", target: "/jobs/cron/table?x=%00&%FF=1", want: []int{200}}},
		"GET /api/cron":        {{name: "unknown parameters", target: "/api/cron?x=%00&%FF=1", want: []int{200}}},
		"POST /api/cron/:name/:action": {
			{name: "unknown entry", target: "/api/cron/nope/run", want: []int{404}, msg: "nope"},
			{name: "unknown entry with markup", target: "/api/cron/%3Cscript%3E/pause", want: []int{404}},
			{name: "unknown action", target: "/api/cron/db-optimize/explode", want: []int{404}, msg: "action"},
			{name: "the action as a query", target: "/api/cron/db-optimize?action=run", want: []int{404, 405}},
		},
		"POST /jobs/cron/:name/:action": {
			{name: "unknown entry", target: "/jobs/cron/nope/pause", want: []int{404}},
			{name: "unknown action", target: "/jobs/cron/db-optimize/explode", want: []int{404}},
			{name: "unknown entry from htmx", target: "/jobs/cron/nope/resume", header: map[string]string{"HX-Request": "true"}, want: []int{404}, msg: "nope"},
		},
		"GET /dashboard":              {{name: "unknown parameters", target: "/dashboard?x=%00&%FF=1", want: []int{200}}},
		"GET /dashboard/live":         {{name: "unknown parameters", target: "/dashboard/live?x=%00&%FF=1", want: []int{200}}},
		"GET /api/stats":              {{name: "unknown parameters", target: "/api/stats?x=%00&%FF=1", want: []int{200}}},
		"GET /api/nodes":              {{name: "unknown parameters", target: "/api/nodes?x=%00&%FF=1", want: []int{200}}},
		"GET /metrics":                {{name: "unknown parameters", target: "/metrics?x=%00&%FF=1", want: []int{200}}},
		"GET /":                       etList("/"),
		"GET /extraterrestrials/rows": etList("/extraterrestrials/rows"),
		"GET /api/extraterrestrials":  etList("/api/extraterrestrials"),
		// The buttons take no input: a request from another site's page
		// is their hostile input (and the generic cases).
		"POST /phone-home":         buttonCases("POST", "/phone-home"),
		"POST /api/phone-home":     buttonCases("POST", "/api/phone-home"),
		"GET /events":              stream,
		"GET /healthz":             {{name: "unknown parameters", target: "/healthz?verbose=1&%00=1", want: []int{200}}},
		"GET /static/*":            static,
		"GET /pets":                petList("/pets"),
		"GET /pets/rows":           petList("/pets/rows"),
		"GET /api/pets":            petList("/api/pets"),
		"GET /pets/new":            {{name: "parameters with markup", target: "/pets/new?name=%3Cscript%3E&species=%22", want: []int{200}}},
		"POST /pets":               withTarget("POST", "/pets", adoptForm),
		"POST /api/pets":           withTarget("POST", "/api/pets", adoptJSON),
		"GET /pets/:id":            {{name: "unknown pet", target: "/pets/999999", want: []int{404}, msg: "no pet"}},
		"GET /api/pets/:id":        {{name: "unknown pet", target: "/api/pets/999999", want: []int{404}, msg: "no pet"}},
		"POST /pets/:id/feed":      {{name: "someone else's pet", target: "/pets/1/feed", want: []int{403}, msg: "not your pet"}, {name: "unknown pet", target: "/pets/999999/feed", want: []int{404}}},
		"POST /api/pets/:id/feed":  {{name: "someone else's pet", target: "/api/pets/1/feed", want: []int{403}, msg: "not your pet"}, {name: "unknown pet", target: "/api/pets/999999/feed", want: []int{404}}},
		"POST /pets/:id/treat":     {{name: "nobody watching", target: "/pets/1/treat", want: []int{409}}, {name: "unknown pet", target: "/pets/999999/treat", want: []int{404}}},
		"POST /api/pets/:id/treat": {{name: "nobody watching", target: "/api/pets/1/treat", want: []int{409}}, {name: "unknown pet", target: "/api/pets/999999/treat", want: []int{404}}},
	}
}

// MaxTestBody is one byte past the server's 1 MiB body limit (BodyLimit in handlers.NewServer).
const MaxTestBody = 1<<20 + 1

func withTarget(method, target string, cases []hostileRequest) []hostileRequest {
	out := slices.Clone(cases)
	for i := range out {
		out[i].method, out[i].target = method, target
	}
	return out
}

// genericCases are what every route gets: bad values in each path
// parameter, every method it does not answer, an oversized body, unknown
// query parameters, and for a route that changes things a request from
// another site's page.
func genericCases(r *echo.Route, methodsOf map[string][]string) []hostileRequest {
	var out []hostileRequest
	segments := strings.Split(r.Path, "/")
	// fill is routeTarget with segment at (if any: -1 is none) replaced by
	// bad: routeTarget replaces whole segments only, so its segments line
	// up with these.
	fill := func(bad string, at int) string {
		parts := strings.Split(routeTarget(r.Path), "/")
		if at >= 0 {
			parts[at] = bad
		}
		return strings.Join(parts, "/")
	}
	for i, s := range segments {
		switch {
		case strings.HasPrefix(s, ":id"):
			for _, bad := range hostileIDs {
				want := []int{400, 404}
				if bad == "9223372036854775807" && slices.Contains(goneIsOK, getOf(r.Method)+" "+r.Path) {
					want = append(want, 200)
				}
				out = append(out, hostileRequest{name: "bad id " + bad, method: r.Method, target: fill(bad, i), want: want})
			}
		case strings.HasPrefix(s, ":"):
			for _, bad := range hostileWords {
				out = append(out, hostileRequest{name: "bad " + s[1:] + " " + bad, method: r.Method, target: fill(bad, i), want: []int{400, 404, 422}})
			}
		}
	}
	plain := fill("", -1)
	for _, m := range []string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"} {
		if slices.Contains(methodsOf[r.Path], m) {
			continue
		}
		if m == "HEAD" && slices.Contains(methodsOf[r.Path], "GET") {
			// HEAD of a GET route is the GET's answer without its body
			// (checked with the GET's own cases), not a wrong method.
			continue
		}
		want := []int{405}
		// Another route of this method may take the same path (GET
		// /api/jobs/:id takes /api/jobs/bulk): it answers instead. A HEAD
		// may be answered by a GET route.
		for path, methods := range methodsOf {
			if path != r.Path && (slices.Contains(methods, m) || m == "HEAD" && slices.Contains(methods, "GET")) && routeMatches(path, plain) {
				want = []int{400, 404, 405, 422}
			}
		}
		out = append(out, hostileRequest{name: "wrong method " + m, method: m, target: plain, want: want})
	}
	if r.Method != "HEAD" { // a HEAD has no body to send
		out = append(out, hostileRequest{name: "oversized body", method: r.Method, target: plain, size: MaxTestBody,
			header: map[string]string{"Content-Type": "application/json"}, want: []int{413}, msg: "too large"})
	}
	switch r.Method {
	case "GET", "HEAD":
		// Unknown parameters are ignored; the answer is whatever the
		// route answers, but never a server error.
		out = append(out, hostileRequest{name: "unknown parameters", method: r.Method, target: plain + "?zz%00=%FF&__proto__=1&%E2%80%AE=1",
			want: []int{200, 400, 404, 422}})
	default:
		c := crossSite[0]
		out = append(out, hostileRequest{name: c.name, method: r.Method, target: plain, header: c.header,
			want: []int{403}, msg: "cross-site"})
	}
	return out
}

// getOf is the method whose cases a request of method m shares: GET's for
// HEAD.
func getOf(m string) string {
	if m == "HEAD" {
		return "GET"
	}
	return m
}

// routeTarget is a path the route pattern matches: ids 1, other
// parameters "default", a file for a trailing *.
func routeTarget(pattern string) string {
	parts := strings.Split(pattern, "/")
	for i, s := range parts {
		switch {
		case strings.HasPrefix(s, ":id"):
			parts[i] = "1"
		case strings.HasPrefix(s, ":"):
			parts[i] = "default"
		case s == "*":
			parts[i] = "app.css"
		}
	}
	return strings.Join(parts, "/")
}

// headCases are the cases of a GET route sent as HEAD: the same statuses,
// no body. Cases that need a body are left out.
func headCases(get []hostileRequest) []hostileRequest {
	var out []hostileRequest
	for _, h := range get {
		if h.body != "" || h.size > 0 {
			continue
		}
		h.method = "HEAD"
		h.name += " (HEAD)"
		out = append(out, h)
	}
	return out
}

// routeMatches reports whether Echo's route pattern (with :params and a
// trailing *) matches the path.
func routeMatches(pattern, path string) bool {
	ps, xs := strings.Split(pattern, "/"), strings.Split(path, "/")
	for i, p := range ps {
		switch {
		case p == "*":
			return true
		case i >= len(xs):
			return false
		case strings.HasPrefix(p, ":"):
			if xs[i] == "" {
				return false
			}
		case p != xs[i]:
			return false
		}
	}
	return len(ps) == len(xs)
}
