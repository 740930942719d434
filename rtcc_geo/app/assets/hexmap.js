// The commander map's hexagons: a MapLibre vector-tile layer inside the Plotly map.
//
// Plotly draws the map (offline style, outlines, live trace, zoom/pan with uirevision);
// the hexagons are our own layer on the same MapLibre map, because a Plotly choropleth
// re-tiles every polygon in the browser on each load (slow at 20k+ cells). Geometry comes
// as vector tiles from /geo/tiles/<res>/... (cached by the browser); colours come from the
// 'map-hex' store ({res, tiles, ids, k, v, palette, labels, unit, line}) and are applied
// as feature state, so a recolour moves only ids and numbers. Hover shows the value; a
// click hands the cell to Dash (set_props on 'map-click').
(function () {
  var H = window.rtccHex = {data: null, shown: null, painted: 0, map: null, source: null};
  var FILL = 'rtcc-hex-fill', LINE = 'rtcc-hex-line';

  function graph() { return document.querySelector('#map .js-plotly-plot'); }
  function mapOf(gd) {
    var fl = gd && gd._fullLayout, sp = fl && fl.map && fl.map._subplot;
    return sp && sp.map;
  }

  function ensureLayers(m, d) {
    var src = 'rtcc-hex-' + d.res + '-' + d.version;
    if (m.getSource(src) && m.getLayer(FILL)) return src;
    [FILL, LINE].forEach(function (id) { if (m.getLayer(id)) m.removeLayer(id); });
    (m.getStyle().sources ? Object.keys(m.getStyle().sources) : []).forEach(function (s) {
      if (s.indexOf('rtcc-hex-') === 0 && s !== src) m.removeSource(s);
    });
    if (!m.getSource(src)) {
      m.addSource(src, {type: 'vector', tiles: [location.origin + d.tiles], minzoom: d.minzoom,
                        maxzoom: d.maxzoom, bounds: d.bounds});
    }
    // Below Plotly's own layers (outlines, live points), above the background.
    var layers = m.getStyle().layers, before;
    for (var i = 0; i < layers.length; i++) {
      if (layers[i].type !== 'background') { before = layers[i].id; break; }
    }
    var has = ['!=', ['feature-state', 'c'], null];
    m.addLayer({id: FILL, type: 'fill', source: src, 'source-layer': 'hex',
                paint: {'fill-color': ['coalesce', ['feature-state', 'c'], 'rgba(0,0,0,0)'],
                        'fill-opacity': ['case', has, d.opacity, 0], 'fill-antialias': false}}, before);
    if (d.line) {
      m.addLayer({id: LINE, type: 'line', source: src, 'source-layer': 'hex',
                  paint: {'line-color': 'rgba(60,60,60,0.35)', 'line-width': d.line,
                          'line-opacity': ['case', has, 1, 0]}}, before);
    }
    H.shown = null;  // a new source has no feature state yet
    return src;
  }

  function paint() {
    var gd = graph(), m = mapOf(gd), d = H.data;
    if (!m || !d || !m.isStyleLoaded()) return false;
    if (H.map !== m) { H.map = m; H.shown = null; hook(m); }
    var src = ensureLayers(m, d);
    if (H.shown === d) return true;
    var sl = {source: src, sourceLayer: 'hex'};
    m.removeFeatureState(sl);
    var ids = d.ids, k = d.k, pal = d.palette;
    for (var i = 0; i < ids.length; i++) {
      m.setFeatureState({source: src, sourceLayer: 'hex', id: ids[i]}, {c: pal[k[i]], i: i});
    }
    H.source = src;
    H.shown = d;
    H.painted += 1;
    return true;
  }

  function text(f) {
    var d = H.data, i = f.state && f.state.i;
    if (!d || i === undefined || i === null) return null;
    var v = d.v[i], lab = d.labels ? d.labels[d.k[i]] : (v === null ? 'no value' : v + (d.unit ? ' ' + d.unit : ''));
    return f.properties.h + '\n' + d.label + ': ' + lab;
  }

  function hook(m) {
    var tip = document.createElement('div');
    tip.id = 'hex-tip';
    tip.style.cssText = 'position:absolute;pointer-events:none;background:#fff;border:1px solid #889;' +
      'padding:3px 6px;font:12px system-ui,sans-serif;white-space:pre;display:none;z-index:10';
    m.getContainer().appendChild(tip);
    m.on('mousemove', FILL, function (e) {
      var t = e.features && e.features.length ? text(e.features[0]) : null;
      if (!t) { tip.style.display = 'none'; return; }
      tip.textContent = t;
      tip.style.left = (e.point.x + 12) + 'px';
      tip.style.top = (e.point.y + 12) + 'px';
      tip.style.display = 'block';
      m.getCanvas().style.cursor = 'pointer';
    });
    m.on('mouseleave', FILL, function () { tip.style.display = 'none'; m.getCanvas().style.cursor = ''; });
    m.on('click', FILL, function (e) {
      var f = e.features && e.features[0];
      if (!f || !window.dash_clientside || !window.dash_clientside.set_props) return;
      window.dash_clientside.set_props('map-click', {data: {cell: f.properties.h, t: Date.now()}});
    });
    // Plotly may replace the style (e.g. a full redraw): put the hexagons back.
    m.on('styledata', function () { if (H.data && !m.getLayer(FILL)) { H.shown = null; schedule(); } });
  }

  var timer = null;
  function schedule() {
    if (timer) return;
    timer = setTimeout(function tick() {
      timer = null;
      if (!paint() && H.data) timer = setTimeout(tick, 30);
    }, 0);
  }

  // PNG of the map as shown (hexagons, outlines, live points) with a title line and the
  // legend. Plotly's own image export re-draws the figure without our layer, so the app
  // offers this instead. The WebGL buffer is read right after a render, while it is valid.
  H.png = function () {
    var m = H.map, d = H.data;
    if (!m) return Promise.resolve(null);
    return new Promise(function (resolve) {
      m.once('render', function () {
        var src = m.getCanvas(), r = window.devicePixelRatio || 1;
        var c = document.createElement('canvas');
        c.width = src.width; c.height = src.height;
        var g = c.getContext('2d');
        g.drawImage(src, 0, 0);
        g.scale(r, r);
        var W = src.width / r, Hh = src.height / r;
        var title = (document.getElementById('summary-text') || {}).textContent || '';
        var size = 13;
        do { g.font = size + 'px system-ui, sans-serif'; } while (g.measureText(title).width > W - 16 && --size > 8);
        g.fillStyle = 'rgba(29,39,49,0.9)'; g.fillRect(0, 0, W, 24);
        g.fillStyle = '#fff'; g.fillText(title, 8, 16);
        g.font = '13px system-ui, sans-serif';
        if (d) {
          var x = W - 210, y = Hh - 30 - (d.kind === 'categorical' ? 16 * d.palette.length : 34);
          g.fillStyle = 'rgba(255,255,255,0.92)';
          g.fillRect(x - 8, y - 18, 210, Hh - y + 6);
          g.fillStyle = '#111'; g.fillText(d.label + (d.unit ? ' (' + d.unit + ')' : ''), x, y - 2);
          if (d.kind === 'categorical') {
            d.palette.forEach(function (col, i) {
              g.fillStyle = col; g.fillRect(x, y + 4 + 16 * i, 12, 12);
              g.fillStyle = '#111'; g.fillText(d.labels[i], x + 18, y + 14 + 16 * i);
            });
          } else {
            var n = d.palette.length;
            d.palette.forEach(function (col, i) { g.fillStyle = col; g.fillRect(x + 180 * i / n, y + 4, 180 / n + 1, 12); });
            g.fillStyle = '#111';
            g.fillText('0', x, y + 30);
            g.fillText('\u2265 ' + d.zmax, x + 140, y + 30);
          }
        }
        resolve(c.toDataURL('image/png'));
      });
      m.triggerRepaint();
    });
  };

  window.dash_clientside = window.dash_clientside || {};
  window.dash_clientside.rtcc = Object.assign(window.dash_clientside.rtcc || {}, {
    savePng: function (n) {
      if (!n) return window.dash_clientside.no_update;
      return H.png().then(function (url) {
        if (!url) return 'no map';
        var a = document.createElement('a');
        a.href = url; a.download = 'rtcc-map.png';
        document.body.appendChild(a); a.click(); a.remove();
        return 'saved ' + n;
      });
    },
    paintHex: function (data) {
      H.data = data;
      schedule();
      return data ? data.res + ':' + data.ids.length : '';
    }
  });
})();
