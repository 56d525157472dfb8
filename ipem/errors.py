"""Errors that every layer of ipem may raise; this module imports nothing of ipem.

:class:`ParameterError` is a ValueError about one parameter (or a clash of a
few) whose message is a template, so that the command line can name its own
option and give its own advice with the same words.  It is re-exported by
:mod:`ipem.validation`, where the checks that raise it live.
"""

__all__ = ["ParameterError"]


class ParameterError(ValueError):
    """A bad value of one parameter (or a clash of several), in words that name it.

    The message is written once, as a template, so that a caller who sets the
    parameter under another name (the CLI's options) can show the same words
    with its own name and its own advice, without rewording the message.

    Parameters
    ----------
    template : str
        The message, with ``{name}`` where the parameter's name goes.  For a
        message about several parameters, ``{name:PARAM}`` marks each of them
        (``{name}`` is then the first).  ``{hint}`` marks where the hint goes;
        without it the hint ends the message.  Nothing else in the template is
        a placeholder (braces in paths and values are kept as they are).
    parameter : str or tuple of str
        The Python parameter(s) the message is about.
    hint : str, optional
        Advice that only makes sense from Python (e.g. "or pass resume=False").

    Attributes
    ----------
    template : str
    parameter : str
        The (first) parameter.
    parameters : tuple of str
        Every parameter the template names.
    hint : str

    Examples
    --------
    >>> e = ParameterError("{name} must be > 0, got -1", "tol")
    >>> str(e), e.render("--tol"), e.render({"tol": "-t"})
    ('tol must be > 0, got -1', '--tol must be > 0, got -1', '-t must be > 0, got -1')
    >>> ParameterError("{name}=3 is too large", "seed").render("--seed")
    '--seed 3 is too large'
    """

    def __init__(self, template, parameter, *, hint=""):
        self.template, self.hint = str(template), str(hint)
        self.parameters = (parameter,) if isinstance(parameter, str) else tuple(parameter)
        self.parameter = self.parameters[0]
        super().__init__(self.render({}))

    def render(self, name, hint=None):
        """The message with other names for the parameters and another hint.

        Parameters
        ----------
        name : str or mapping
            The name to show for :attr:`parameter`, or a mapping from
            parameters to the names to show (parameters not in it keep their
            own).  A shown name that starts with ``-`` is a command-line option:
            ``name=value`` then reads ``--option value``.
        hint : str, optional
            The advice to show instead of :attr:`hint`.

        Returns
        -------
        str
        """
        names = dict(name) if not isinstance(name, str) else {self.parameter: name}
        text = self.template
        for i, param in enumerate(self.parameters):
            shown = names.get(param, param)
            tokens = [f"{{name:{param}}}"] + (["{name}"] if i == 0 else [])
            for token in tokens:
                if shown.startswith("-"):
                    text = text.replace(token + "=", shown + " ")
                text = text.replace(token, shown)
        hint = self.hint if hint is None else hint
        if "{hint}" in text:
            return text.replace("{hint}", hint)
        return f"{text}{hint}" if hint else text

    def __reduce__(self):
        return (ParameterError, (self.template, self.parameters), {"hint": self.hint})

    def __setstate__(self, state):
        self.__init__(self.template, self.parameters, **state)
