// Stable Training lecture decks: number the fragments of each slide in document order (an
// instructor deck's stub and solution share one number, so one press swaps them), start reveal.js,
// fit each slide when it is shown, and let the clicker keys scroll a slide that still does not fit.
(function () {
  var MIN_FIT = 0.72;

  document.querySelectorAll('.reveal .slides section').forEach(function (section) {
    if (section.querySelector('section')) return;  // a column of slides: its children are the slides
    var index = 0;
    section.querySelectorAll('.fragment').forEach(function (fragment) {
      fragment.setAttribute('data-fragment-index', String(index));
      if (!fragment.classList.contains('st-stub')) index += 1;
    });
  });

  function frameOf(slide) { return slide && slide.querySelector(':scope > .st-frame'); }

  function overflows(frame) { return frame.scrollHeight > frame.clientHeight + 1; }

  // Lower the slide's type size in steps until its content fits; a slide that still does not fit
  // at MIN_FIT scrolls (class st-scroll), and the keys below scroll it.
  function fit(slide) {
    var frame = frameOf(slide);
    if (!frame || slide.dataset.stFitted) return;
    var scale = 1;
    frame.style.setProperty('--st-fit', '1');
    while (overflows(frame) && scale > MIN_FIT + 1e-6) {
      scale = Math.max(MIN_FIT, scale - 0.04);
      frame.style.setProperty('--st-fit', scale.toFixed(2));
    }
    slide.classList.toggle('st-scroll', overflows(frame));
    slide.dataset.stFitted = scale.toFixed(2);
  }

  function refit(slide) {
    if (!slide) return;
    delete slide.dataset.stFitted;
    fit(slide);
  }

  // Next/previous for every key a clicker or a keyboard sends: on a slide that does not fit, show
  // its fragments (a solution) first, then scroll, then move on. PageDown, Space, →, ↓, N go
  // forward; PageUp, ←, ↑, P go back.
  function step(direction) {
    var slide = Reveal.getCurrentSlide();
    var frame = frameOf(slide);
    if (direction > 0 && Reveal.availableFragments().next) {
      Reveal.nextFragment();
      return;
    }
    if (frame && slide.classList.contains('st-scroll')) {
      var page = Math.max(60, frame.clientHeight - 80);
      if (direction > 0 && frame.scrollTop + frame.clientHeight < frame.scrollHeight - 2) {
        frame.scrollTop = Math.min(frame.scrollTop + page, frame.scrollHeight);
        return;
      }
      if (direction < 0 && frame.scrollTop > 0) {
        frame.scrollTop = Math.max(0, frame.scrollTop - page);
        return;
      }
    }
    if (direction > 0) Reveal.next(); else Reveal.prev();
  }
  function forward() { step(1); }
  function back() { step(-1); }

  function arrived(event) {
    var slide = event.currentSlide || Reveal.getCurrentSlide();
    fit(slide);
    var frame = frameOf(slide);
    if (frame) frame.scrollTop = 0;
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
    controlsTutorial: false,
    progress: true,
    slideNumber: 'c/t',
    navigationMode: 'linear',  // → and PageDown reach every slide, as a clicker expects
    transition: 'none',
    keyboard: {34: forward, 32: forward, 39: forward, 40: forward, 78: forward,
               33: back, 37: back, 38: back, 80: back},
    plugins: [RevealNotes]
  }).then(function () {
    arrived({currentSlide: Reveal.getCurrentSlide()});
    document.querySelectorAll('.st-slide img').forEach(function (img) {
      if (!img.complete) img.addEventListener('load', function () { refit(img.closest('.st-slide')); });
    });
    var typeset = window.MathJax && MathJax.startup && MathJax.startup.promise;
    Promise.resolve(typeset).then(function () {
      // formulas change the height of text: fit the slides again once they are typeset
      document.querySelectorAll('.st-slide[data-st-fitted]').forEach(function (s) { delete s.dataset.stFitted; });
      fit(Reveal.getCurrentSlide());
      document.documentElement.dataset.stReady = '1';
    });
  });
  Reveal.on('slidechanged', arrived);
  window.StDeck = {fit: fit, refit: refit, step: step};
})();
