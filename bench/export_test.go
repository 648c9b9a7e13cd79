package bench

// ParseConnack exposes parseConnack to the external tests.
var ParseConnack = parseConnack
