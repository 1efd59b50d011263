// Static explorers: an ipywidgets explorer drawn in advance for every setting of its controls.
// Moving a control looks the picture up in the table the deck builder wrote; no kernel needed.
(function () {
  function setup(root) {
    var data = JSON.parse(root.querySelector('script.st-explorer-data').textContent);
    var controls = Array.prototype.slice.call(root.querySelectorAll('[data-control]'));
    var leaves = Array.prototype.slice.call(root.querySelectorAll('[data-leaf]'));
    function show() {
      var key = controls.map(function (c) { return c.value; }).join(',');
      controls.forEach(function (c) {
        var out = c.parentNode.querySelector('output');
        if (out) out.textContent = data.labels[c.getAttribute('data-control')][Number(c.value)];
      });
      var frame = data.frames[key];
      if (!frame) return;
      var disabled = (data.disabled && data.disabled[key]) || [];
      controls.forEach(function (c, i) { c.disabled = disabled.indexOf(i) >= 0; });
      leaves.forEach(function (leaf, i) {
        var content = data.leaves[i][frame[i]];
        if (leaf.tagName === 'IMG') {
          if (leaf.getAttribute('src') !== content) leaf.setAttribute('src', content);
        } else if (leaf.innerHTML !== content) {
          leaf.innerHTML = content;
          if (window.MathJax && MathJax.typesetPromise) MathJax.typesetPromise([leaf]);
        }
      });
      root.setAttribute('data-frame', key);
    }
    controls.forEach(function (c) {
      c.addEventListener('input', show);
      c.addEventListener('change', show);
      // Arrow keys move the control, not the slides. Every other key (a clicker's PageDown,
      // PageUp, B, .) leaves the control, so that reveal.js, which ignores keys typed into a
      // control, turns the slide.
      c.addEventListener('keydown', function (event) {
        if (/^Arrow|^Home$|^End$/.test(event.key)) event.stopPropagation();
        else c.blur();
      });
      c.addEventListener('change', function () { if (c.tagName === 'SELECT') c.blur(); });
      c.addEventListener('pointerup', function () { setTimeout(function () { c.blur(); }, 0); });
    });
    show();
  }
  document.querySelectorAll('.st-explorer[data-static]').forEach(setup);
})();
