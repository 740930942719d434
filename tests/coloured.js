// coloured(map, feature): true when the hexagon layer's fill colour, as MapLibre evaluates
// the layer's paint for this rendered feature (its feature state included), is not
// transparent. Shared by bench/app.py and the browser tests (tests/browser.py).
function coloured(m, f) {
  const L = m.getLayer('rtcc-hex-fill');
  const p = L && L.paint && L.paint.get && L.paint.get('fill-color');
  if (!p || !p.evaluate) throw new Error('no evaluable fill-color on rtcc-hex-fill');
  const c = p.evaluate({type: 3, id: f.id, properties: f.properties || {}}, f.state || {});
  return !!c && c.a > 0;
}
