package views

import (
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestStatusIconsReferToTheLayoutsSprite: a live row carries each status
// icon as a reference (<use href="#…">) to a symbol every page holds once,
// not as the drawing itself, and every reference has its symbol.
func TestStatusIconsReferToTheLayoutsSprite(t *testing.T) {
	v, err := New()
	if err != nil {
		t.Fatal(err)
	}
	page, err := v.Page(PageError, ErrorPage{Status: 404, StatusText: "Not Found", Message: "no such page"})
	if err != nil {
		t.Fatal(err)
	}
	symbols := map[string]bool{}
	for _, m := range regexp.MustCompile(`<symbol id="([^"]+)"`).FindAllStringSubmatch(string(page), -1) {
		symbols[m[1]] = true
	}
	at := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, status := range []string{"phoning_home", "space_taxi_on_the_way", "no_answer"} {
		row, err := v.Fragment(PartialETRow, Row{ET: Extraterrestrial{ID: 42, Name: "Zorg", CommunicationStatus: status,
			CommunicationAttempt: 1, LastAttemptAt: at}, OOB: true})
		if err != nil {
			t.Fatal(err)
		}
		uses := regexp.MustCompile(`<use href="#([^"]+)"`).FindAllStringSubmatch(string(row), -1)
		if len(uses) != 1 || !symbols[uses[0][1]] {
			t.Errorf("%s: the row's icon references %v; the layout's symbols are %v", status, uses, symbols)
		}
		if strings.Contains(string(row), "<path") || len(row) > 450 {
			t.Errorf("%s: the row (%d bytes) draws its icon instead of referring to it:\n%s", status, len(row), row)
		}
	}
}
