// The commander map's hexagons: a MapLibre vector-tile layer inside the Plotly map.
//
// Plotly draws the map (offline style, outlines, live trace, zoom/pan with uirevision);
// the hexagons are our own layer on the same MapLibre map, because a Plotly choropleth
// re-tiles every polygon in the browser on each load (slow at 20k+ cells). Geometry comes
// as vector tiles from /geo/tiles/<res>/... (cached by the browser); colours come from the
// 'map-hex' store ({res, tiles, ids, k, v, palette, labels, unit, line}) and are applied
// as feature state, so a recolour moves only ids and numbers. Hover shows the value; a
// click hands the cell to Dash (set_props on 'map-click').
//
// Base layers ('map-base' store): the agency's streets as vector tiles from
// /geo/base/streets/... drawn over the hexagons (thin, translucent, so the street
// pattern shows through the colours), and district labels as HTML over the map
// (positioned with map.project: no glyph server, legible at every zoom).
(function () {
  var H = window.rtccHex = {data: null, shown: null, painted: 0, map: null, source: null, base: null,
                            baseShown: null, labels: []};
  var FILL = 'rtcc-hex-fill', LINE = 'rtcc-hex-line', STREETS = 'rtcc-streets', FOUND = 'rtcc-found';

  // The first layer our hexagons go under: Plotly's own (outlines, live points).
  function firstPlotlyLayer(m) {
    var ids = m.getLayersOrder();
    for (var i = 0; i < ids.length; i++) {
      if (ids[i].indexOf('rtcc-') !== 0 && m.getLayer(ids[i]).type !== 'background') return ids[i];
    }
    return undefined;
  }

  // When our layers may go in: the style is there and MapLibre's 'load' has fired. Plotly
  // adds its own layers (district outlines, live points) only after 'load', and 'load'
  // waits for the tiles of every source in the style: a hexagon or street source added
  // before it made the outlines wait for our tiles (decoded one after another in
  // MapLibre's single worker), then be tiled themselves, a second round of worker work and
  // frames. Added after 'load', theirs and ours load together. ('load' comes one frame
  // after the style: ours has a background and an empty source only.)
  function styleReady(m) {
    return !!(m && m.style && m.style._loaded && (m._loaded !== undefined ? m._loaded : m.loaded()));
  }

  function graph() { return document.querySelector('#map .js-plotly-plot'); }
  function mapOf(gd) {
    var fl = gd && gd._fullLayout, sp = fl && fl.map && fl.map._subplot;
    return sp && sp.map;
  }

  var CLEAR = 'rgba(0,0,0,0)';

  // The colours of ``d`` by cell: ``k`` the palette index by feature id (-1: not drawn),
  // ``pos`` the cell's index in ``d`` (for the tooltip's value), ``pal`` the palette with
  // the map's opacity.
  function coloursOf(d) {
    var ids = d.ids, n = 0, i;
    for (i = 0; i < ids.length; i++) if (ids[i] >= n) n = ids[i] + 1;
    var k = new Array(n).fill(-1), pos = new Int32Array(n).fill(-1);
    for (i = 0; i < ids.length; i++) { k[ids[i]] = d.k[i]; pos[ids[i]] = i; }
    return {k: k, pos: pos, pal: d.palette.map(function (c) { return withAlpha(c, d.opacity); })};
  }

  // The palette index of a feature in the colours ``c`` (an expression: evaluated in the
  // worker as it decodes the tiles).
  function indexExpr(c) {
    return ['case', ['<', ['number', ['id'], 1e9], c.k.length], ['at', ['number', ['id'], 0], ['literal', c.k]], -1];
  }

  function colourExpr(c) {
    if (!c.pal.length) return CLEAR;
    var e = ['match', indexExpr(c)];
    c.pal.forEach(function (p, i) { e.push(i, p); });
    e.push(CLEAR);
    return e;
  }

  // The layers are made with the colours of the data at hand ("baked" into the paint
  // expression), so the worker colours every hexagon as it decodes the tile and the main
  // thread has no per-feature work: with the colours as feature state, MapLibre decoded
  // every tile a second time on the main thread to apply them (about half of the tiles'
  // time at 25k cells). A recolour (filter change) then sets the feature state of the
  // cells whose colour differs from the baked one, which the expression prefers.
  function ensureLayers(m, d) {
    var src = 'rtcc-hex-' + d.res + '-' + d.version;
    if (m.getSource(src) && m.getLayer(FILL)) return src;
    var had = !!m.getSource(src);
    [FILL, LINE].forEach(function (id) { if (m.getLayer(id)) m.removeLayer(id); });
    Object.keys(m.getStyle().sources || {}).forEach(function (s) {
      if (s.indexOf('rtcc-hex-') === 0 && s !== src) m.removeSource(s);
    });
    if (!had) {
      m.addSource(src, {type: 'vector', tiles: [location.origin + d.tiles], minzoom: d.minzoom,
                        maxzoom: d.maxzoom, bounds: d.bounds});
    } else {
      m.removeFeatureState({source: src, sourceLayer: 'hex'});  // colours of an earlier recolour
    }
    var c = coloursOf(d);
    // Below the streets and Plotly's own layers (outlines, live points), above the background.
    var before = m.getLayer(STREETS) ? STREETS : firstPlotlyLayer(m);
    // The colour carries the opacity; the layer's opacity depends on the zoom only. A
    // data-driven opacity would be a second per-vertex attribute MapLibre computes for every
    // hexagon of every tile (~20 % of the tiles' load time at 25k cells).
    m.addLayer({id: FILL, type: 'fill', source: src, 'source-layer': 'hex',
                // A little lighter at street zoom (the streets are drawn over the cells).
                paint: {'fill-color': ['coalesce', ['feature-state', 'c'], colourExpr(c)],
                        'fill-opacity': ['interpolate', ['linear'], ['zoom'], 12, 1, 15, 0.85],
                        'fill-antialias': false}}, before);
    if (d.line) {
      var st = ['feature-state', 'c'];
      m.addLayer({id: LINE, type: 'line', source: src, 'source-layer': 'hex',
                  paint: {'line-color': 'rgba(60,60,60,0.35)', 'line-width': d.line,
                          'line-opacity': ['case', ['!=', st, null], ['case', ['==', st, CLEAR], 0, 1],
                                           ['case', ['>=', indexExpr(c), 0], 1, 0]]}}, before);
    }
    H.baked = c;
    H.bakedFor = d;
    H.shown = null;
    return src;
  }

  // A palette colour ('#rrggbb', 'rgb(...)', 'rgba(...)') with its alpha times ``a``.
  function withAlpha(c, a) {
    var r, g, b, al = 1, m;
    if (c[0] === '#') {
      r = parseInt(c.slice(1, 3), 16); g = parseInt(c.slice(3, 5), 16); b = parseInt(c.slice(5, 7), 16);
    } else if ((m = /\(([^)]*)\)/.exec(c))) {
      var p = m[1].split(',').map(Number);
      r = p[0]; g = p[1]; b = p[2]; if (p.length > 3) al = p[3];
    } else return c;
    return 'rgba(' + r + ',' + g + ',' + b + ',' + +(al * a).toFixed(3) + ')';
  }

  // A map not ready for our layers yet: paint as soon as 'load' has fired (after Plotly's
  // own reaction to it, a microtask), not at the next 30 ms retry.
  function whenLoaded(m) {
    if (!m || m.__rtccWaiting || styleReady(m)) return;
    m.__rtccWaiting = true;
    m.once('load', function () { setTimeout(function () { schedule(); scheduleBase(); }, 0); });
  }

  // Colours ``c`` on a layer baked with ``b``: feature state for the cells that differ.
  function recolour(m, src, c, b) {
    var sl = {source: src, sourceLayer: 'hex'}, id;
    m.removeFeatureState(sl);
    for (id = 0; id < c.k.length; id++) {
      var k = c.k[id];
      if (k < 0) continue;
      var bk = id < b.k.length ? b.k[id] : -1;
      if (bk < 0 || b.pal[bk] !== c.pal[k]) m.setFeatureState({source: src, sourceLayer: 'hex', id: id}, {c: c.pal[k]});
    }
    for (id = 0; id < b.k.length; id++) {
      if (b.k[id] >= 0 && (id >= c.k.length || c.k[id] < 0)) {
        m.setFeatureState({source: src, sourceLayer: 'hex', id: id}, {c: CLEAR});
      }
    }
  }

  function paint() {
    var gd = graph(), m = mapOf(gd), d = H.data;
    whenLoaded(m);
    if (!m || !d || !styleReady(m)) return false;
    if (H.map !== m) { H.map = m; H.shown = null; hook(m); }
    var src = ensureLayers(m, d);
    if (H.shown === d) return true;
    var c = H.bakedFor === d ? H.baked : coloursOf(d);
    if (H.bakedFor !== d) recolour(m, src, c, H.baked);
    H.colours = c;
    H.source = src;
    H.shown = d;
    H.painted += 1;
    return true;
  }

  function text(f) {
    var d = H.shown, c = H.colours, i = c && f.id < c.pos.length ? c.pos[f.id] : -1;
    if (!d || i < 0) return null;
    var v = d.v[i], lab = d.labels ? d.labels[d.k[i]] : (v === null ? 'no value' : v + (d.unit ? ' ' + d.unit : ''));
    var place = H.names[f.properties.h];
    if (place === undefined) { askName(f.properties.h); place = '…'; }
    return (place || 'cell ' + f.properties.h) + '\n' + d.label + ': ' + lab;
  }

  // Cell names ("1500 BLOCK MARKET ST, district 06") from the server, for the role
  // signed in; asked for the cell under the pointer only, and kept.
  H.names = {};
  var asking = {};
  function askName(h) {
    if (asking[h]) return;
    asking[h] = 1;
    fetch('/geo/place/' + h, {credentials: 'same-origin'}).then(function (r) { return r.ok ? r.json() : null; })
      .then(function (j) {
        H.names[h] = j ? j.name : '';
        if (H.hover && H.hover.h === h && H.tipEl) { H.tipEl.textContent = text(H.hover.f); }
      }).catch(function () { delete asking[h]; });
  }

  // --- base layers ------------------------------------------------------------
  function paintBase() {
    var gd = graph(), m = mapOf(gd), b = H.base;
    whenLoaded(m);
    if (!m || !b || !styleReady(m)) return false;
    if (H.map !== m) { H.map = m; H.shown = null; hook(m); }
    if (b.streets && !m.getLayer(STREETS)) {
      if (!m.getSource(STREETS)) {
        m.addSource(STREETS, {type: 'vector', tiles: [location.origin + b.streets.tiles], minzoom: b.streets.minzoom,
                              maxzoom: b.streets.maxzoom, bounds: b.streets.bounds});
      }
      // From zoom 10.5 (~45 m a pixel): below it every street is one grey smear and its tiles
      // (the whole city's network) would only slow the opening view down.
      m.addLayer({id: STREETS, type: 'line', source: STREETS, 'source-layer': 'streets', minzoom: 10.5,
                  // Butt caps and miter joins (the defaults): round ones triple the triangles
                  // MapLibre builds for 40k short segments, and at these widths look the same.
                  paint: {'line-color': '#4a5560',
                          'line-opacity': ['interpolate', ['linear'], ['zoom'], 10.5, 0.3, 12, 0.45, 15, 0.6],
                          'line-width': ['interpolate', ['exponential', 1.6], ['zoom'], 9, 0.3, 12, 0.7, 15, 2.2, 18, 6]}},
                 firstPlotlyLayer(m));
    }
    H.baseShown = b;
    placeLabels();
    return true;
  }

  function labelBox(m) {
    var c = m.getContainer(), box = c.querySelector('.district-labels');
    if (!box) {
      box = document.createElement('div');
      box.className = 'district-labels';
      c.appendChild(box);
    }
    return box;
  }

  // Labels in view, at most one per 150 x 40 px box (the district's main point first).
  function placeLabels() {
    var m = H.map, b = H.base;
    if (!m || !b) return;
    var box = labelBox(m), z = m.getZoom(), W = box.clientWidth, Hh = box.clientHeight, taken = [], out = [];
    var labs = (b.labels || []).filter(function (l) { return z >= l.z; });
    labs.sort(function (a, c) { return a.z - c.z; });
    for (var i = 0; i < labs.length; i++) {
      var p = m.project([labs[i].lon, labs[i].lat]), hw = labs[i].t.length * 4.5 + 6;  // ~half the text's width
      if (p.x < hw || p.y < 12 || p.x > W - hw || p.y > Hh - 12) continue;
      var clash = false;
      for (var j = 0; j < taken.length; j++) {
        if (Math.abs(taken[j].x - p.x) < 150 && Math.abs(taken[j].y - p.y) < 40) { clash = true; break; }
      }
      if (clash) continue;
      taken.push(p);
      out.push({t: labs[i].t, x: p.x, y: p.y});
    }
    H.labels = out;
    while (box.children.length < out.length) {
      var el = document.createElement('div');
      el.className = 'district-label';
      box.appendChild(el);
    }
    for (var k = 0; k < box.children.length; k++) {
      var e = box.children[k];
      if (k < out.length) {
        e.textContent = out[k].t;
        e.style.left = out[k].x + 'px'; e.style.top = out[k].y + 'px'; e.style.display = '';
      } else e.style.display = 'none';
    }
  }

  // Move the camera through Plotly (not MapLibre directly): Plotly keeps the view in its
  // layout and puts the map back to it on any resize or restyle.
  H.setView = function (lonlat, zoom) {
    var gd = graph();
    if (!gd || !window.Plotly) return false;
    window.Plotly.relayout(gd, {'map.center': {lon: lonlat[0], lat: lonlat[1]}, 'map.zoom': zoom});
    return true;
  };

  function fitPlace(hit) {
    var m = H.map;
    if (!m || !hit || !hit.bbox) return false;
    var b = hit.bbox;
    if (b[0] === b[2] && b[1] === b[3]) H.setView([b[0], b[1]], 16.5);
    else {
      var cam = m.cameraForBounds([[b[0], b[1]], [b[2], b[3]]], {padding: 40, maxZoom: 16.5});
      H.setView([cam.center.lng, cam.center.lat], cam.zoom);
    }
    // Mark the place found: a ring at a block, the outline's box for a street or district.
    var gj = {type: 'FeatureCollection', features: [{type: 'Feature', properties: {},
      geometry: b[0] === b[2] ? {type: 'Point', coordinates: [b[0], b[1]]}
                              : {type: 'LineString', coordinates: [[b[0], b[1]], [b[2], b[1]], [b[2], b[3]], [b[0], b[3]], [b[0], b[1]]]}}]};
    if (m.getSource(FOUND)) m.getSource(FOUND).setData(gj);
    else {
      m.addSource(FOUND, {type: 'geojson', data: gj});
      m.addLayer({id: FOUND + '-ring', type: 'circle', source: FOUND, filter: ['==', ['geometry-type'], 'Point'],
                  paint: {'circle-radius': 14, 'circle-color': 'rgba(0,0,0,0)', 'circle-stroke-width': 3,
                          'circle-stroke-color': '#6a00a8'}});
      m.addLayer({id: FOUND + '-box', type: 'line', source: FOUND, filter: ['==', ['geometry-type'], 'LineString'],
                  paint: {'line-color': '#6a00a8', 'line-width': 2, 'line-dasharray': [2, 2]}});
    }
    H.found = hit;
    return true;
  }

  function hook(m) {
    var tip = document.createElement('div');
    tip.id = 'hex-tip';
    tip.style.cssText = 'position:absolute;pointer-events:none;background:#fff;border:1px solid #889;' +
      'padding:3px 6px;font:12px system-ui,sans-serif;white-space:pre;display:none;z-index:10';
    m.getContainer().appendChild(tip);
    H.tipEl = tip;
    var hideTip = function () { tip.style.display = 'none'; };
    m.on('move', placeLabels);
    m.on('resize', placeLabels);
    m.on('movestart', hideTip);
    m.on('resize', hideTip);
    m.getCanvas().addEventListener('mouseleave', hideTip);
    m.on('mousemove', FILL, function (e) {
      var f0 = e.features && e.features.length ? e.features[0] : null;
      var t = f0 ? text(f0) : null;
      H.hover = f0 ? {h: f0.properties.h, f: f0} : null;
      if (!t) { tip.style.display = 'none'; return; }
      tip.textContent = t;
      // Kept inside the map (a tooltip past its right edge would widen a phone's page).
      var cw = m.getContainer().clientWidth;
      tip.style.left = Math.max(0, Math.min(e.point.x + 12, cw - 300)) + 'px';
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
    m.on('styledata', function () {
      if (H.data && !m.getLayer(FILL)) { H.shown = null; schedule(); }
      if (H.base && H.base.streets && !m.getLayer(STREETS)) scheduleBase();
    });
  }

  // Run ``draw`` soon, and again every 30 ms until it succeeds (the map may not exist yet).
  function retrying(draw, wanted) {
    var timer = null;
    return function () {
      if (timer) return;
      timer = setTimeout(function tick() {
        timer = null;
        if (!draw() && wanted()) timer = setTimeout(tick, 30);
      }, 0);
    };
  }
  var schedule = retrying(function () { return paint(); }, function () { return !!H.data; });
  var scheduleBase = retrying(function () { return paintBase(); }, function () { return !!H.base; });
  H.placeLabels = placeLabels;

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
        g.font = '600 13px system-ui, sans-serif'; g.textAlign = 'center'; g.textBaseline = 'middle';
        g.lineWidth = 3; g.strokeStyle = 'rgba(255,255,255,0.9)'; g.fillStyle = '#1d2731';
        (H.labels || []).forEach(function (l) { g.strokeText(l.t, l.x, l.y); g.fillText(l.t, l.x, l.y); });
        g.textAlign = 'start'; g.textBaseline = 'alphabetic';
        var W = src.width / r, Hh = src.height / r;
        var title = (document.getElementById('summary-text') || {}).textContent || '';
        var size = 13;
        do { g.font = size + 'px system-ui, sans-serif'; } while (g.measureText(title).width > W - 16 && --size > 8);
        g.fillStyle = 'rgba(29,39,49,0.9)'; g.fillRect(0, 0, W, 24);
        g.fillStyle = '#fff'; g.fillText(title, 8, 16);
        g.font = '13px system-ui, sans-serif';
        if (d) {
          var x = W - 210, y = Hh - 30 - (d.kind === 'categorical' ? 16 * d.palette.length : d.empty ? 52 : 34);
          g.fillStyle = 'rgba(255,255,255,0.92)';
          g.fillRect(x - 8, y - 18, 210, Hh - y + 6);
          g.fillStyle = '#111'; g.fillText(d.label + (d.unit ? ' (' + d.unit + ')' : ''), x, y - 2);
          if (d.kind === 'categorical') {
            d.palette.forEach(function (col, i) {
              g.fillStyle = col; g.fillRect(x, y + 4 + 16 * i, 12, 12);
              g.fillStyle = '#111'; g.fillText(d.labels[i], x + 18, y + 14 + 16 * i);
            });
          } else {
            // palette[0] is the empty class (its own swatch), the rest the ramp.
            var ramp = d.palette.slice(1), n = ramp.length;
            ramp.forEach(function (col, i) { g.fillStyle = col; g.fillRect(x + 180 * i / n, y + 4, 180 / n + 1, 12); });
            g.fillStyle = '#111';
            g.fillText(d.unit === 'incidents' ? '1' : '> 0', x, y + 30);
            g.fillText('\u2265 ' + d.zmax, x + 140, y + 30);
            if (d.empty) {
              g.fillStyle = d.palette[0]; g.fillRect(x, y + 38, 12, 12);
              g.fillStyle = '#111'; g.fillText(d.empty_label || '0', x + 18, y + 48);
            }
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
    paintBase: function (data) {
      H.base = data;
      scheduleBase();
      return data ? (data.streets ? 'streets+' : '') + (data.labels || []).length : '';
    },
    pickHit: function (clicks, hits) {
      var t = window.dash_clientside.callback_context.triggered;
      if (!t || !t.length || !t[0].value || !hits) return window.dash_clientside.no_update;
      var i = JSON.parse(t[0].prop_id.split('.')[0]).i;
      return Object.assign({}, hits[i], {t: Date.now()});
    },
    gotoPlace: function (hit) {
      if (!hit) {
        var m = H.map;
        if (m && m.getSource(FOUND)) m.getSource(FOUND).setData({type: 'FeatureCollection', features: []});
        H.found = null;
        return '';
      }
      var tries = 0;
      (function go() { if (!fitPlace(hit) && ++tries < 100) setTimeout(go, 50); })();
      return hit.label;
    },
    paintHex: function (data) {
      H.data = data;
      schedule();
      return data ? data.res + ':' + data.ids.length : '';
    }
  });
})();
