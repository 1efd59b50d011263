// Stable Training decks: number the fragments of each slide in document order (an instructor
// deck's stub and solution share one number, so one click swaps them), then start reveal.js.
(function () {
  document.querySelectorAll('.reveal .slides section').forEach(function (section) {
    if (section.querySelector('section')) return;  // a vertical stack: its children are the slides
    var index = 0;
    section.querySelectorAll('.fragment').forEach(function (fragment) {
      fragment.setAttribute('data-fragment-index', String(index));
      if (!fragment.classList.contains('st-stub')) index += 1;
    });
  });
  function markOverflow() {
    document.querySelectorAll('.reveal .slides section').forEach(function (section) {
      section.classList.toggle('st-overflow', section.scrollHeight > section.clientHeight + 2);
    });
  }
  Reveal.initialize({
    width: 1280,
    height: 720,
    margin: 0,
    minScale: 0.2,
    maxScale: 2.0,
    center: false,
    hash: true,
    controls: true,
    progress: true,
    slideNumber: 'c/t',
    transition: 'none',
    plugins: [RevealNotes]
  }).then(markOverflow);
  Reveal.on('slidechanged', markOverflow);
})();
