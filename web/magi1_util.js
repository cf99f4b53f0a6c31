// Small helpers shared by the pack's front-end files (magi1.js, magi1_panel.js). ComfyUI loads
// every script in this folder as an extension; this one only exports, so loading it does nothing.

/** Run `callback` after whatever `object[property]` already did (VideoHelperSuite's helper). */
export function chainCallback(object, property, callback) {
  const original = object[property];
  object[property] = original
    ? function (...args) {
        const result = original.apply(this, args);
        return callback.apply(this, args) ?? result;
      }
    : callback;
}
